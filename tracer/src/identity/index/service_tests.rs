//! Swarm services in the index: VIPs name their service on events, follow
//! upserts and removals, survive a snapshot and a serde round trip (what a
//! capture records and a replay applies).

use std::{net::IpAddr, time::Duration};

use super::*;
use crate::{
    event::{Action, EcsEvent, Kind},
    identity::ServiceVip,
};

const T0: i128 = 1_700_000_000_000_000_000;
const OV_ID: &str = "4zd4qm3u2hy1czgdz9lcy1fwa";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn updates() -> Vec<IdentityUpdate> {
    vec![
        IdentityUpdate::NetworkUpsert {
            ts: T0,
            network: NetworkInfo {
                id: OV_ID.into(),
                name: "backend".into(),
                driver: Some("overlay".into()),
                ingress: false,
                bridge: None,
            },
        },
        IdentityUpdate::ServiceUpsert {
            ts: T0,
            service: ServiceInfo {
                id: "svc1".into(),
                name: "web".into(),
                endpoint_mode: Some("vip".into()),
                vips: vec![ServiceVip {
                    network_id: OV_ID.into(),
                    ip: ip("10.0.5.2"),
                }],
            },
        },
    ]
}

fn to(dst: &str) -> EcsEvent {
    let mut e = EcsEvent::new(T0 + 1, Kind::Event, Action::TcpRetransmit);
    e.source.ip = Some(ip("10.0.5.7"));
    e.destination.ip = Some(ip(dst));
    e
}

#[test]
fn an_event_to_a_vip_names_the_service_and_its_network() {
    let mut ix = IdentityIndex::new(Duration::from_secs(30));
    for u in updates() {
        ix.apply(&u);
    }
    let mut e = to("10.0.5.2");
    ix.enrich(&mut e);
    let s = e.tracer.service.as_deref().expect("service");
    assert_eq!(s.name, "web");
    assert!(s.vip);
    assert_eq!(s.network.as_deref(), Some("backend"));
    assert_eq!(s.endpoint_mode.as_deref(), Some("vip"));
    let mut other = to("10.0.5.3");
    ix.enrich(&mut other);
    assert!(other.tracer.service.is_none());

    ix.apply(&IdentityUpdate::ServiceRemove {
        ts: T0 + 2,
        id: "svc1".into(),
    });
    let mut gone = to("10.0.5.2");
    ix.enrich(&mut gone);
    assert!(gone.tracer.service.is_none());
}

#[test]
fn services_survive_snapshot_and_serde() {
    let mut ix = IdentityIndex::new(Duration::from_secs(30));
    for u in updates() {
        ix.apply(&u);
    }
    let snap = ix.snapshot();
    let text: Vec<String> = snap
        .iter()
        .map(|u| serde_json::to_string(u).unwrap())
        .collect();
    let mut again = IdentityIndex::new(Duration::from_secs(30));
    for t in &text {
        again.apply(&serde_json::from_str::<IdentityUpdate>(t).unwrap());
    }
    let mut e = to("10.0.5.2");
    again.enrich(&mut e);
    assert_eq!(
        e.tracer.service.as_deref().map(|s| s.name.as_str()),
        Some("web")
    );
}
