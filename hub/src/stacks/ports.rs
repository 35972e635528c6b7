//! Compose's port syntax, short (`"127.0.0.1:8080-8081:80-81/udp"`) and long (`target:`,
//! `published:`, `host_ip:`, `protocol:`), to one [`PortBinding`] per port.

use docker_compose_types::{Port, PublishedPort};
use outpost_protocol::stack::{PortBinding, PortProtocol};

/// Most ports one service publishes (ranges expanded).
pub(super) const MAX_PORTS: usize = 1024;

/// Bindings of one short-syntax entry.
pub(super) fn short(text: &str) -> Result<Vec<PortBinding>, String> {
    let (spec, protocol) = match text.rsplit_once('/') {
        Some((spec, protocol)) => (spec, parse_protocol(protocol)?),
        None => (text, PortProtocol::Tcp),
    };
    let (host_ip, rest) = split_host_ip(spec)?;
    let (host, container) = match rest.rsplit_once(':') {
        Some((host, container)) => (Some(host), container),
        None => (None, rest),
    };
    let container = range(container)?;
    let host = host.filter(|h| !h.is_empty()).map(range).transpose()?;
    bindings(host_ip, host, container, protocol)
}

/// Bindings of one long-syntax entry.
pub(super) fn long(port: &Port) -> Result<Vec<PortBinding>, String> {
    if port.mode.as_deref().is_some_and(|m| m != "host") {
        return Err("only `mode: host` is supported (ingress is a swarm feature)".to_owned());
    }
    let protocol = port
        .protocol
        .as_deref()
        .map(parse_protocol)
        .transpose()?
        .unwrap_or(PortProtocol::Tcp);
    let host = match &port.published {
        None => None,
        Some(PublishedPort::Single(p)) => Some((*p, *p)),
        Some(PublishedPort::Range(r)) => Some(range(r)?),
    };
    bindings(
        port.host_ip.clone(),
        host,
        (port.target, port.target),
        protocol,
    )
}

fn bindings(
    host_ip: Option<String>,
    host: Option<(u16, u16)>,
    container: (u16, u16),
    protocol: PortProtocol,
) -> Result<Vec<PortBinding>, String> {
    let count = usize::from(container.1 - container.0) + 1;
    if count > MAX_PORTS {
        return Err(format!("a service publishes at most {MAX_PORTS} ports"));
    }
    if let Some(host) = host {
        // A host range may be wider than the container's (the engine picks in it); the engine's
        // API takes one host port per binding, so only equal widths or a single port are kept.
        if host.1 - host.0 != container.1 - container.0 {
            return Err("host and container port ranges must be the same length".to_owned());
        }
    }
    Ok((0..count)
        .map(|offset| {
            let offset = offset as u16;
            PortBinding {
                host_ip: host_ip.clone(),
                host_port: host.map(|h| h.0 + offset),
                container_port: container.0 + offset,
                protocol,
            }
        })
        .collect())
}

/// `[ip:]rest`, where ip may be `[v6]` or dotted IPv4.
fn split_host_ip(spec: &str) -> Result<(Option<String>, &str), String> {
    if let Some(bracketed) = spec.strip_prefix('[') {
        let (ip, rest) = bracketed
            .split_once("]:")
            .ok_or_else(|| format!("{spec:?}: an IPv6 address needs `[addr]:port`"))?;
        return Ok((Some(ip.to_owned()), rest));
    }
    let parts: Vec<&str> = spec.split(':').collect();
    match parts.len() {
        1 | 2 => Ok((None, spec)),
        3 => Ok((Some(parts[0].to_owned()), &spec[parts[0].len() + 1..])),
        _ => Err(format!("{spec:?} is not [ip:][host:]container")),
    }
}

/// `80` or `8000-8010`.
fn range(text: &str) -> Result<(u16, u16), String> {
    let (low, high) = text.split_once('-').unwrap_or((text, text));
    let low = port_number(low)?;
    let high = port_number(high)?;
    if low > high {
        return Err(format!("port range {text:?} runs backwards"));
    }
    Ok((low, high))
}

fn port_number(text: &str) -> Result<u16, String> {
    match text.parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err(format!("{text:?} is not a port number (1-65535)")),
    }
}

fn parse_protocol(text: &str) -> Result<PortProtocol, String> {
    match text {
        "tcp" => Ok(PortProtocol::Tcp),
        "udp" => Ok(PortProtocol::Udp),
        "sctp" => Ok(PortProtocol::Sctp),
        _ => Err(format!("unknown protocol {text:?} (tcp, udp or sctp)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(host_ip: Option<&str>, host: Option<u16>, container: u16) -> PortBinding {
        PortBinding {
            host_ip: host_ip.map(str::to_owned),
            host_port: host,
            container_port: container,
            protocol: PortProtocol::Tcp,
        }
    }

    #[test]
    fn short_forms() {
        assert_eq!(short("80").unwrap(), vec![one(None, None, 80)]);
        assert_eq!(short("8080:80").unwrap(), vec![one(None, Some(8080), 80)]);
        assert_eq!(
            short("127.0.0.1:8080:80").unwrap(),
            vec![one(Some("127.0.0.1"), Some(8080), 80)]
        );
        assert_eq!(
            short("127.0.0.1::80").unwrap(),
            vec![one(Some("127.0.0.1"), None, 80)]
        );
        assert_eq!(
            short("[::1]:8080:80").unwrap(),
            vec![one(Some("::1"), Some(8080), 80)]
        );
        let udp = short("9000-9001:90-91/udp").unwrap();
        assert_eq!(udp.len(), 2);
        assert_eq!(
            (udp[1].host_port, udp[1].container_port, udp[1].protocol),
            (Some(9001), 91, PortProtocol::Udp)
        );
    }

    #[test]
    fn bad_short_forms_are_refused() {
        for bad in [
            "",
            "0",
            "80/icmp",
            "a:b",
            "1:2:3:4",
            "90-80",
            "8000-8002:80",
            "1-65535",
        ] {
            assert!(short(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn long_form() {
        let port = Port {
            target: 80,
            host_ip: Some("127.0.0.1".to_owned()),
            published: Some(PublishedPort::Range("8080".to_owned())),
            protocol: Some("tcp".to_owned()),
            mode: None,
        };
        assert_eq!(
            long(&port).unwrap(),
            vec![one(Some("127.0.0.1"), Some(8080), 80)]
        );
        let ingress = Port {
            mode: Some("ingress".to_owned()),
            ..port
        };
        assert!(long(&ingress).is_err());
    }
}
