//! The transport profile that fits the path to the hub, measured (`--transport auto`).
//!
//! The profiles differ in what they assume before the first round trip (the initial RTT, so the
//! handshake's retransmission timer and the dial timeout) and in the receive window and congestion
//! controller sized for the link. A device rarely knows which link it is on, and may move between
//! them (a kiosk whose LTE fails over to a satellite dish), so `auto` measures: each connection's
//! smoothed round trip at its end picks the profile for the next dial, remembered in the data
//! directory across restarts. The very first connection decides from its handshake already (a
//! handshake that waited in a busy hub's admission queue reads long; the next session corrects
//! it). A connection that measured keeps its controller (quinn cannot swap it) but takes the
//! fitting receive window at once.

use std::path::Path;
use std::time::Duration;

use outpost_transport::profile::{TransportProfile, CELLULAR, LAN, SATELLITE};

/// Below this round trip the path is a LAN or metro link: LTE's best is ~40 ms.
const LAN_BELOW: Duration = Duration::from_millis(30);
/// From this round trip the path is a geostationary satellite: GEO is ≥ ~550 ms, while cellular
/// links, even 3G under load, stay below ~400 ms (the netem profiles' figures).
const SATELLITE_FROM: Duration = Duration::from_millis(450);

/// The file holding the last choice: the profile's name.
const FILE: &str = "transport";
/// A profile name is a short word; anything longer is not ours.
const MAX_FILE: u64 = 32;

/// The profile for a path with round trip `rtt`.
pub fn fitting(rtt: Duration) -> TransportProfile {
    if rtt < LAN_BELOW {
        LAN
    } else if rtt < SATELLITE_FROM {
        CELLULAR
    } else {
        SATELLITE
    }
}

/// The profile chosen by an earlier measurement, if one was remembered and is readable.
pub fn remembered(data_dir: &Path) -> Option<TransportProfile> {
    let path = data_dir.join(FILE);
    if std::fs::metadata(&path).ok()?.len() > MAX_FILE {
        return None;
    }
    TransportProfile::by_name(std::fs::read_to_string(path).ok()?.trim())
}

/// Remember `profile` for the next start.
pub fn remember(data_dir: &Path, profile: &TransportProfile) -> std::io::Result<()> {
    std::fs::write(data_dir.join(FILE), format!("{}\n", profile.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_link_class_gets_its_profile() {
        let ms = Duration::from_millis;
        assert_eq!(fitting(ms(1)).name, "lan");
        assert_eq!(fitting(ms(29)).name, "lan");
        assert_eq!(fitting(ms(45)).name, "cellular", "LEO");
        assert_eq!(fitting(ms(120)).name, "cellular", "LTE");
        assert_eq!(fitting(ms(400)).name, "cellular", "3G under load");
        assert_eq!(fitting(ms(600)).name, "satellite", "GEO");
    }

    #[test]
    fn a_choice_survives_a_restart_and_junk_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        assert!(remembered(dir.path()).is_none());
        remember(dir.path(), &SATELLITE).unwrap();
        assert_eq!(remembered(dir.path()).unwrap().name, "satellite");
        std::fs::write(dir.path().join(FILE), "warp-drive\n").unwrap();
        assert!(remembered(dir.path()).is_none());
        std::fs::write(dir.path().join(FILE), "lan".repeat(20)).unwrap();
        assert!(remembered(dir.path()).is_none());
    }
}
