//! What the names in `/var/run/docker/netns` say.
//!
//! libnetwork names each namespace file after the first 12 characters of a
//! key (`osl.GenerateKey`):
//! - overlay network namespaces: `<epoch>-<network id>` → `1-4zd4qm3u2h`
//!   (the first 10 characters of the network id after `1-`);
//! - the load-balancer sandbox of an overlay network: `lb_<network id>` →
//!   `lb_4zd4qm3u2` (9 characters of the id);
//! - the routing mesh's sandbox: `ingress_sbox`;
//! - container sandboxes: the first 12 hex digits of the sandbox id.

/// A parsed Docker namespace name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetnsName<'a> {
    /// Overlay network namespace (holds `br0`, `vxlan0`, one veth per container).
    Overlay { epoch: u32, network_prefix: &'a str },
    /// Load-balancer sandbox of a network.
    LoadBalancer { network_prefix: &'a str },
    /// The swarm ingress network's sandbox.
    Ingress,
    /// A container's sandbox (the first 12 hex digits of its sandbox id).
    Sandbox { key: &'a str },
    /// Anything else.
    Other,
}

impl<'a> NetnsName<'a> {
    /// Prefix of the Docker network id this namespace belongs to.
    pub fn network_prefix(&self) -> Option<&'a str> {
        match *self {
            Self::Overlay { network_prefix, .. } | Self::LoadBalancer { network_prefix } => {
                Some(network_prefix)
            }
            _ => None,
        }
    }
}

fn is_id_chars(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
}

/// Parses one file name of `/var/run/docker/netns`.
pub fn parse_netns_name(name: &str) -> NetnsName<'_> {
    if name == "ingress_sbox" {
        return NetnsName::Ingress;
    }
    if let Some(prefix) = name.strip_prefix("lb_") {
        if is_id_chars(prefix) && prefix.len() <= 9 {
            return NetnsName::LoadBalancer {
                network_prefix: prefix,
            };
        }
        return NetnsName::Other;
    }
    if name.len() == 12
        && name
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        return NetnsName::Sandbox { key: name };
    }
    if let Some((epoch, prefix)) = name.split_once('-') {
        if let Ok(epoch) = epoch.parse::<u32>() {
            if is_id_chars(prefix) && name.len() <= 12 {
                return NetnsName::Overlay {
                    epoch,
                    network_prefix: prefix,
                };
            }
        }
    }
    NetnsName::Other
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_namespaces() {
        assert_eq!(
            parse_netns_name("1-4zd4qm3u2h"),
            NetnsName::Overlay {
                epoch: 1,
                network_prefix: "4zd4qm3u2h"
            }
        );
        assert_eq!(
            parse_netns_name("1-abcdef1234"),
            NetnsName::Overlay {
                epoch: 1,
                network_prefix: "abcdef1234"
            }
        );
        // A re-created overlay sandbox gets a new epoch.
        assert_eq!(
            parse_netns_name("2-qc7yx7w7y"),
            NetnsName::Overlay {
                epoch: 2,
                network_prefix: "qc7yx7w7y"
            }
        );
        assert_eq!(
            parse_netns_name("1-4zd4qm3u2h").network_prefix(),
            Some("4zd4qm3u2h")
        );
    }

    #[test]
    fn sandboxes_lb_and_ingress() {
        assert_eq!(
            parse_netns_name("e1ddbd169773"),
            NetnsName::Sandbox {
                key: "e1ddbd169773"
            }
        );
        assert_eq!(parse_netns_name("ingress_sbox"), NetnsName::Ingress);
        assert_eq!(
            parse_netns_name("lb_4zd4qm3u2"),
            NetnsName::LoadBalancer {
                network_prefix: "4zd4qm3u2"
            }
        );
        assert_eq!(
            parse_netns_name("lb_4zd4qm3u2").network_prefix(),
            Some("4zd4qm3u2")
        );
        assert_eq!(parse_netns_name("e1ddbd169773").network_prefix(), None);
    }

    #[test]
    fn everything_else() {
        for n in [
            "",
            "default",
            "myns",
            "E1DDBD169773",
            "e1ddbd16977",
            "lb_",
            "lb_UPPER",
            "1-",
            "x-abcdef1234",
            "1-abcdef12345",
            "1-ab/cd",
            "ingress_sbox2",
        ] {
            assert_eq!(parse_netns_name(n), NetnsName::Other, "{n:?}");
        }
    }
}
