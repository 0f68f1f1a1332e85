//! rtnetlink dumps (links, bridge FDB) of the namespace the calling thread is
//! in. Synchronous on purpose: callers run them on a thread inside the
//! target namespace ([`crate::kernel::netns::run_in`]).

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_route::{
    link::{InfoData, InfoVxlan, LinkAttribute, LinkInfo, LinkMessage},
    neighbour::{NeighbourAttribute, NeighbourMessage},
    AddressFamily, RouteNetlinkMessage,
};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum NetlinkError {
    #[error("netlink socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("netlink dump answered with error {0}")]
    Kernel(i32),
    #[error("malformed netlink message: {0}")]
    Decode(String),
}

/// One interface as rtnetlink reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mac: Option<[u8; 6]>,
    /// Bridge (or bond) this interface is enslaved to.
    pub master: Option<u32>,
    /// IFLA_LINK: for a veth, the peer's ifindex (in `link_netnsid`'s namespace).
    pub link: Option<u32>,
    pub link_netnsid: Option<i32>,
    /// IFLA_INFO_KIND: "veth", "bridge", "vxlan", ...
    pub kind: Option<String>,
    /// IFLA_MTU.
    pub mtu: Option<u32>,
    /// IFLA_VXLAN_PORT of a vxlan: the UDP port its frames go to (4789
    /// unless the overlay's data-path port was changed).
    pub vxlan_port: Option<u16>,
}

/// One bridge FDB entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FdbEntry {
    pub bridge: u32,
    pub port: u32,
    pub mac: [u8; 6],
    pub vlan: u16,
}

fn dump(msg: RouteNetlinkMessage) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    header.sequence_number = 1;
    let mut req = NetlinkMessage::new(header, NetlinkPayload::from(msg));
    req.finalize();
    let mut buf = vec![0u8; req.buffer_len()];
    req.serialize(&mut buf);
    socket.send(&buf, 0)?;

    let mut out = Vec::new();
    let mut rx = vec![0u8; 1 << 16];
    loop {
        let n = socket.recv(&mut &mut rx[..], 0)?;
        if n == 0 {
            return Ok(out);
        }
        let mut off = 0;
        while off < n {
            let bytes = &rx[off..n];
            let m = NetlinkMessage::<RouteNetlinkMessage>::deserialize(bytes)
                .map_err(|e| NetlinkError::Decode(e.to_string()))?;
            let len = m.header.length as usize;
            match m.payload {
                NetlinkPayload::Done(_) => return Ok(out),
                NetlinkPayload::Error(e) => {
                    let code = e.code.map(|c| c.get()).unwrap_or(0);
                    if code != 0 {
                        return Err(NetlinkError::Kernel(code));
                    }
                }
                NetlinkPayload::InnerMessage(inner) => out.push(inner),
                _ => {}
            }
            if len == 0 {
                break;
            }
            off += (len + 3) & !3;
        }
    }
}

/// All links of the current namespace.
pub fn links() -> Result<Vec<Link>, NetlinkError> {
    let msgs = dump(RouteNetlinkMessage::GetLink(LinkMessage::default()))?;
    Ok(msgs
        .into_iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) => Some(link_of(&l)),
            _ => None,
        })
        .collect())
}

fn link_of(l: &LinkMessage) -> Link {
    let mut out = Link {
        index: l.header.index,
        ..Link::default()
    };
    for a in &l.attributes {
        match a {
            LinkAttribute::IfName(n) => out.name = n.clone(),
            LinkAttribute::Address(b) if b.len() == 6 => {
                let mut m = [0u8; 6];
                m.copy_from_slice(b);
                out.mac = Some(m);
            }
            LinkAttribute::Controller(c) => out.master = Some(*c),
            LinkAttribute::Link(i) => out.link = Some(*i),
            LinkAttribute::LinkNetNsId(id) => out.link_netnsid = Some(*id),
            LinkAttribute::Mtu(m) => out.mtu = Some(*m),
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    match i {
                        LinkInfo::Kind(k) => out.kind = Some(k.to_string()),
                        LinkInfo::Data(InfoData::Vxlan(v)) => {
                            for a in v {
                                if let InfoVxlan::Port(p) = a {
                                    out.vxlan_port = Some(*p);
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// The bridge forwarding database of the current namespace (all bridges).
pub fn fdb() -> Result<Vec<FdbEntry>, NetlinkError> {
    let mut req = NeighbourMessage::default();
    req.header.family = AddressFamily::Bridge;
    let msgs = dump(RouteNetlinkMessage::GetNeighbour(req))?;
    let mut out = Vec::new();
    for m in msgs {
        let RouteNetlinkMessage::NewNeighbour(n) = m else {
            continue;
        };
        let mut mac = None;
        let mut vlan = 0;
        let mut bridge = None;
        for a in &n.attributes {
            match a {
                NeighbourAttribute::LinkLocalAddress(b) if b.len() == 6 => {
                    let mut m = [0u8; 6];
                    m.copy_from_slice(b);
                    mac = Some(m);
                }
                NeighbourAttribute::Vlan(v) => vlan = *v,
                NeighbourAttribute::Controller(c) => bridge = Some(*c),
                _ => {}
            }
        }
        if let (Some(mac), Some(bridge)) = (mac, bridge) {
            out.push(FdbEntry {
                bridge,
                port: n.header.ifindex,
                mac,
                vlan,
            });
        }
    }
    Ok(out)
}

/// One interface address (RTM_GETADDR), used by [`crate::identity`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Addr {
    /// Ifindex of the interface the address is on.
    pub index: u32,
    pub ip: std::net::IpAddr,
    pub prefix_len: u8,
}

/// All IPv4 and IPv6 addresses of the current namespace.
pub fn addresses() -> Result<Vec<Addr>, NetlinkError> {
    use netlink_packet_route::address::{AddressAttribute, AddressMessage};
    let msgs = dump(RouteNetlinkMessage::GetAddress(AddressMessage::default()))?;
    let mut out = Vec::new();
    for m in msgs {
        let RouteNetlinkMessage::NewAddress(a) = m else {
            continue;
        };
        // IFA_LOCAL is the interface's own address on point-to-point links
        // (IFA_ADDRESS is then the peer); otherwise both are the same.
        let mut local = None;
        let mut address = None;
        for attr in &a.attributes {
            match attr {
                AddressAttribute::Local(ip) => local = Some(*ip),
                AddressAttribute::Address(ip) => address = Some(*ip),
                _ => {}
            }
        }
        if let Some(ip) = local.or(address) {
            out.push(Addr {
                index: a.header.index,
                ip,
                prefix_len: a.header.prefix_len,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_listed() {
        let links = links().expect("rtnetlink dump");
        let lo = links.iter().find(|l| l.name == "lo").expect("lo present");
        assert_eq!(lo.index, 1);
    }
}
