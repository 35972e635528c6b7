//! A fake Docker engine on loopback for a test agent's `DOCKER_HOST=tcp://…`: it answers every
//! request with what the test chooses and records every request head, so a test sees exactly what
//! reached the device's engine through the hub.

use std::io::{BufRead as _, BufReader, Write as _};
use std::sync::{Arc, Mutex};

/// What a fake engine answers to a request head.
pub type Answer = fn(&str) -> String;

/// A Docker engine that answers with `answer` and keeps every request head it was sent.
pub fn recording_engine(answer: Answer) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("fake engine");
    let addr = listener.local_addr().expect("fake engine").to_string();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let recorded = heads.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let heads = recorded.clone();
            std::thread::spawn(move || serve_recorded(stream, &heads, answer));
        }
    });
    (addr, heads)
}

fn serve_recorded(stream: std::net::TcpStream, heads: &Mutex<Vec<String>>, answer: Answer) {
    let mut writer = stream.try_clone().expect("fake engine");
    let mut reader = BufReader::new(stream);
    loop {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            head.push_str(&line);
            if line == "\r\n" {
                break;
            }
        }
        let body = answer(&head);
        heads.lock().expect("fake engine").push(head);
        let answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nApi-Version: 1.43\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if writer.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}
