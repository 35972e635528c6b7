//! An extra engine in a network namespace that already exists — a rig's agent side
//! (`crate::rig`), so that what the engine fetches crosses the emulated link — with flags of the
//! test's own (`--insecure-registry` for a registry in the rig's hub side).
//!
//! The namespace is the caller's: the engine enters it (`nsenter --net`, so only the network
//! namespace changes, as with `unshare --net` for the others) and never creates or deletes it; it
//! turns forwarding on there, as in its own. Its slot, directory and clean-up are the ordinary
//! ones. Its pool is a `/20` of `198.18.128.0/17`: the rig's own addresses are `198.18.0.0/24`
//! (hub side) and `198.18.1.0/24` (agent side), inside slot 0's ordinary pool, and a Compose
//! network on one of those would shadow the route to the hub.

use std::path::Path;
use std::process::Command;

use super::Dockerd;

/// An existing namespace to run in, and the flags to add there.
#[derive(Debug)]
pub(super) struct Place {
    netns: String,
    pub(super) extra: Vec<String>,
}

impl Place {
    /// `nsenter --net=/run/netns/NAME`, to which the caller adds the command.
    pub(super) fn enter(&self) -> Command {
        let mut command = Command::new("nsenter");
        command.arg(format!("--net=/run/netns/{}", self.netns));
        command
    }
}

impl Dockerd {
    /// Start one engine inside network namespace `netns` (made and removed by the caller, e.g.
    /// [`crate::rig::Rig::netns`]), with `extra_args` added to its flags, the test image loaded.
    /// Panics (with its log) if the namespace is missing or the engine does not answer.
    pub fn start_in_netns(netns: &str, extra_args: &[&str]) -> Self {
        assert!(
            Path::new("/run/netns").join(netns).exists(),
            "no network namespace {netns:?} (ip netns list)"
        );
        Self::launch(Some(Place {
            netns: netns.to_owned(),
            extra: extra_args.iter().map(|a| (*a).to_owned()).collect(),
        }))
    }
}

/// `198.18.128.0/17` as 8 `/20`s, by slot: slot 3 is `198.18.176.0/20`. Two such engines share
/// a pool only when they are in different namespaces (one engine per rig side).
pub(super) fn pool(slot: u32) -> String {
    format!("198.18.{}.0/20", 128 + (slot % 8) * 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `198.18.A.B/20` → its first and last third octet.
    fn octets(pool: &str) -> (u32, u32) {
        let third: u32 = pool.split('.').nth(2).unwrap().parse().unwrap();
        assert!(
            pool.starts_with("198.18.") && pool.ends_with(".0/20"),
            "{pool}"
        );
        (third, third + 15)
    }

    #[test]
    fn rig_pools_stay_in_198_18_128_0_17_clear_of_the_rigs_addresses() {
        assert_eq!(pool(0), "198.18.128.0/20");
        assert_eq!(pool(3), "198.18.176.0/20");
        assert_eq!(pool(15), "198.18.240.0/20");
        for slot in 0..super::super::SLOTS {
            let (first, last) = octets(&pool(slot));
            assert!(first >= 128 && last <= 255, "{}", pool(slot));
            assert!(
                first > 1,
                "overlaps the rig's 198.18.0.0/23: {}",
                pool(slot)
            );
        }
    }
}
