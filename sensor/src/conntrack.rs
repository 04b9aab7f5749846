//! Forgetting a pod's connections in the node's connection tracking (ctnetlink), so that an
//! isolation also cuts the connections already open: NetworkPolicy enforcers accept the
//! packets of tracked connections before any policy, so a reverse shell opened before the
//! isolation would otherwise go on. A forgotten connection's next packet is seen anew and
//! meets the policy.
//!
//! The protocol is netfilter's netlink family: a dump of the tracked connections (IPv4 and
//! IPv6), then a delete of each one with the pod's address at either end, naming it by its
//! original tuple as the dump gave it.

use std::net::IpAddr;

use rustix::net::{AddressFamily, Protocol, RecvFlags, SendFlags, SocketType};

use crate::Error;

const NETLINK_NETFILTER: u32 = 12;
const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_GET: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLA_TYPE_MASK: u16 = 0x3fff;
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_TUPLE_IP: u16 = 1;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_IP_V6_SRC: u16 = 3;
const CTA_IP_V6_DST: u16 = 4;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const HEADER: usize = 16;

/// Deletes every tracked connection with `address` at one end; returns how many.
pub fn forget(address: IpAddr) -> Result<usize, Error> {
    let socket = rustix::net::socket(
        AddressFamily::NETLINK,
        SocketType::RAW,
        Some(Protocol::from_raw(std::num::NonZeroU32::new(NETLINK_NETFILTER).expect("non-zero"))),
    )
    .map_err(|e| Error::Conntrack(format!("cannot open a netfilter netlink socket: {e}")))?;
    let family = if address.is_ipv4() { AF_INET } else { AF_INET6 };
    send(&socket, &message(IPCTNL_MSG_CT_GET, NLM_F_REQUEST | NLM_F_DUMP, 1, family, &[]))?;
    let mut originals = Vec::new();
    let mut buffer = vec![0u8; 1 << 16];
    'dump: loop {
        let (received, _) = rustix::net::recv(&socket, &mut buffer, RecvFlags::empty())
            .map_err(|e| Error::Conntrack(format!("reading the connection table: {e}")))?;
        for (kind, payload) in messages(&buffer[..received]) {
            match kind {
                NLMSG_DONE => break 'dump,
                NLMSG_ERROR => {
                    return Err(Error::Conntrack(format!("the kernel refused the dump: {}", errno(payload))));
                }
                _ => {
                    // nfgenmsg, then the connection's attributes.
                    let attributes = payload.get(4..).unwrap_or_default();
                    if involves(attributes, address)
                        && let Some(original) = attribute(attributes, CTA_TUPLE_ORIG).map(|(raw, _)| raw.to_vec())
                    {
                        originals.push(original);
                    }
                }
            }
        }
    }
    let mut forgotten = 0;
    for (seq, original) in (2u32..).zip(&originals) {
        send(&socket, &message(IPCTNL_MSG_CT_DELETE, NLM_F_REQUEST | NLM_F_ACK, seq, family, original))?;
        let (received, _) = rustix::net::recv(&socket, &mut buffer, RecvFlags::empty())
            .map_err(|e| Error::Conntrack(format!("deleting a connection: {e}")))?;
        // An ack is an error message with errno 0; ENOENT: it ended meanwhile.
        if messages(&buffer[..received]).any(|(kind, payload)| kind == NLMSG_ERROR && errno(payload) == 0) {
            forgotten += 1;
        }
    }
    Ok(forgotten)
}

fn send(socket: &rustix::fd::OwnedFd, message: &[u8]) -> Result<(), Error> {
    rustix::net::send(socket, message, SendFlags::empty())
        .map(drop)
        .map_err(|e| Error::Conntrack(format!("writing to the netfilter netlink socket: {e}")))
}

/// A ctnetlink request: netlink header, nfgenmsg, attributes.
fn message(kind: u16, flags: u16, seq: u32, family: u8, attributes: &[u8]) -> Vec<u8> {
    let length = HEADER + 4 + attributes.len();
    let mut out = Vec::with_capacity(length);
    out.extend_from_slice(&(length as u32).to_ne_bytes());
    out.extend_from_slice(&((NFNL_SUBSYS_CTNETLINK << 8) | kind).to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.extend_from_slice(&[family, 0, 0, 0]);
    out.extend_from_slice(attributes);
    out
}

/// The (type, payload) of each netlink message in a datagram.
fn messages(mut data: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let length = u32::from_ne_bytes(data.get(0..4)?.try_into().ok()?) as usize;
        if length < HEADER || length > data.len() {
            return None;
        }
        let kind = u16::from_ne_bytes(data[4..6].try_into().ok()?);
        let payload = &data[HEADER..length];
        data = &data[align(length).min(data.len())..];
        Some((kind & if kind >> 8 == NFNL_SUBSYS_CTNETLINK { 0xff } else { 0xffff }, payload))
    })
}

fn errno(payload: &[u8]) -> i32 {
    payload.get(0..4).and_then(|b| b.try_into().ok()).map_or(-1, |b| -i32::from_ne_bytes(b))
}

fn align(length: usize) -> usize {
    (length + 3) & !3
}

/// The attributes of an attribute list: (the whole attribute, its payload, its type).
fn attributes(mut data: &[u8]) -> impl Iterator<Item = (&[u8], &[u8], u16)> {
    std::iter::from_fn(move || {
        let length = u16::from_ne_bytes(data.get(0..2)?.try_into().ok()?) as usize;
        if length < 4 || length > data.len() {
            return None;
        }
        let kind = u16::from_ne_bytes(data[2..4].try_into().ok()?) & NLA_TYPE_MASK;
        let whole = &data[..length];
        data = &data[align(length).min(data.len())..];
        Some((whole, &whole[4..], kind))
    })
}

fn attribute(data: &[u8], kind: u16) -> Option<(&[u8], &[u8])> {
    attributes(data).find(|(_, _, k)| *k == kind).map(|(whole, payload, _)| (whole, payload))
}

/// Whether a connection's original or reply tuple has `address` at either end.
fn involves(connection: &[u8], address: IpAddr) -> bool {
    [CTA_TUPLE_ORIG, CTA_TUPLE_REPLY].into_iter().any(|tuple| {
        attribute(connection, tuple).and_then(|(_, tuple)| attribute(tuple, CTA_TUPLE_IP)).is_some_and(|(_, ip)| {
            attributes(ip).any(|(_, value, kind)| match (address, kind) {
                (IpAddr::V4(v4), CTA_IP_V4_SRC | CTA_IP_V4_DST) => value == v4.octets(),
                (IpAddr::V6(v6), CTA_IP_V6_SRC | CTA_IP_V6_DST) => value == v6.octets(),
                _ => false,
            })
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nla(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut out = ((4 + payload.len()) as u16).to_ne_bytes().to_vec();
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(payload);
        out.resize(align(out.len()), 0);
        out
    }

    fn tuple(kind: u16, src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
        let ip = [nla(CTA_IP_V4_SRC, &src), nla(CTA_IP_V4_DST, &dst)].concat();
        nla(kind | 0x8000, &nla(CTA_TUPLE_IP | 0x8000, &ip))
    }

    #[test]
    fn connections_are_matched_at_either_end_of_either_tuple() {
        let connection = [
            tuple(CTA_TUPLE_ORIG, [10, 244, 0, 5], [10, 244, 0, 9]),
            tuple(CTA_TUPLE_REPLY, [10, 244, 0, 9], [10, 244, 0, 5]),
        ]
        .concat();
        assert!(involves(&connection, "10.244.0.5".parse().unwrap()));
        assert!(involves(&connection, "10.244.0.9".parse().unwrap()));
        assert!(!involves(&connection, "10.244.0.7".parse().unwrap()));
        let (original, _) = attribute(&connection, CTA_TUPLE_ORIG).unwrap();
        assert_eq!(original, &tuple(CTA_TUPLE_ORIG, [10, 244, 0, 5], [10, 244, 0, 9])[..]);
    }

    #[test]
    fn requests_carry_their_length_subsystem_and_family() {
        let request = message(IPCTNL_MSG_CT_DELETE, NLM_F_REQUEST | NLM_F_ACK, 7, AF_INET, &[1, 2, 3, 4]);
        assert_eq!(request.len(), 24);
        assert_eq!(u32::from_ne_bytes(request[0..4].try_into().unwrap()), 24);
        assert_eq!(u16::from_ne_bytes(request[4..6].try_into().unwrap()), 0x0102);
        assert_eq!(request[16], AF_INET);
        let parsed: Vec<_> = messages(&request).collect();
        assert_eq!(parsed, [(IPCTNL_MSG_CT_DELETE, &request[16..])]);
    }
}
