//! Netlink dumps that retry when the kernel flags them as interrupted.
//!
//! A dump spans several reads; if the table changes meanwhile (another pod's
//! veth appears, a route goes away), the kernel marks the answer with
//! `NLM_F_DUMP_INTR` and it may be missing entries or hold stale ones. With
//! pods starting in parallel on a node that is common, so every dump here is
//! repeated until it is consistent, up to [`MAX_ATTEMPTS`] times (as
//! containernetworking/plugins `pkg/netlinksafe` does), and a dump that never
//! is becomes "try again later" rather than a decision on bad data.
//!
//! ADD and DEL themselves only make targeted requests; these dumps are what
//! CHECK and GC build on.

use std::future::Future;
use std::num::NonZeroI32;

use futures::StreamExt as _;
use std::net::Ipv4Addr;

use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::LinkMessage;
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteHeader, RouteMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::Handle;
use rtnetlink::packet_core::{
    ErrorMessage, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload,
};

use super::{Error, Link, Result};

/// How many times a dump is tried before giving up.
pub const MAX_ATTEMPTS: usize = 5;

/// The outcome of one try.
#[derive(Debug, PartialEq, Eq)]
enum Attempt<T> {
    Complete(Vec<T>),
    Interrupted,
}

/// Every link of the namespace.
pub async fn links(handle: &Handle) -> Result<Vec<Link>> {
    dump(
        handle,
        "links",
        || RouteNetlinkMessage::GetLink(LinkMessage::default()),
        |reply| match reply {
            RouteNetlinkMessage::NewLink(message) => Some(Link::from_message(&message)),
            _ => None,
        },
    )
    .await
}

/// One IPv4 route of the main table, as CHECK needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// Destination and prefix length; `None` for the default route.
    pub destination: Option<(Ipv4Addr, u8)>,
    /// Gateway, if any.
    pub gateway: Option<Ipv4Addr>,
    /// Output interface index, if any.
    pub output: Option<u32>,
}

/// Every IPv4 route of the main table.
pub async fn ipv4_routes(handle: &Handle) -> Result<Vec<Route>> {
    dump(
        handle,
        "routes",
        || {
            let mut message = RouteMessage::default();
            message.header.address_family = AddressFamily::Inet;
            RouteNetlinkMessage::GetRoute(message)
        },
        |reply| match reply {
            RouteNetlinkMessage::NewRoute(message) if message.header.table == RouteHeader::RT_TABLE_MAIN => {
                let mut route = Route {
                    destination: None,
                    gateway: None,
                    output: None,
                };
                for attribute in &message.attributes {
                    match attribute {
                        RouteAttribute::Destination(RouteAddress::Inet(ip)) => {
                            route.destination = Some((*ip, message.header.destination_prefix_length));
                        }
                        RouteAttribute::Gateway(RouteAddress::Inet(ip)) => route.gateway = Some(*ip),
                        RouteAttribute::Oif(index) => route.output = Some(*index),
                        _ => {}
                    }
                }
                Some(route)
            }
            _ => None,
        },
    )
    .await
}

/// The IPv4 addresses (with prefix length) of link `index`.
pub async fn ipv4_addresses(handle: &Handle, index: u32) -> Result<Vec<(Ipv4Addr, u8)>> {
    dump(
        handle,
        "addresses",
        || {
            let mut message = AddressMessage::default();
            message.header.family = AddressFamily::Inet;
            RouteNetlinkMessage::GetAddress(message)
        },
        |reply| match reply {
            RouteNetlinkMessage::NewAddress(message) if message.header.index == index => {
                message.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Address(std::net::IpAddr::V4(ip)) => {
                        Some((*ip, message.header.prefix_len))
                    }
                    _ => None,
                })
            }
            _ => None,
        },
    )
    .await
}

/// Sends the dump request made by `request` and keeps what `pick` returns of
/// each reply, retrying interrupted dumps.
pub async fn dump<T>(
    handle: &Handle,
    what: &'static str,
    request: impl Fn() -> RouteNetlinkMessage,
    pick: impl Fn(RouteNetlinkMessage) -> Option<T>,
) -> Result<Vec<T>> {
    retry(what, MAX_ATTEMPTS, || dump_once(handle, what, &request, &pick)).await
}

async fn retry<T, F, Fut>(what: &'static str, attempts: usize, mut attempt: F) -> Result<Vec<T>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Attempt<T>>>,
{
    for _ in 0..attempts {
        if let Attempt::Complete(items) = attempt().await? {
            return Ok(items);
        }
    }
    Err(Error::DumpInterrupted { what, attempts })
}

async fn dump_once<T>(
    handle: &Handle,
    what: &'static str,
    request: &impl Fn() -> RouteNetlinkMessage,
    pick: &impl Fn(RouteNetlinkMessage) -> Option<T>,
) -> Result<Attempt<T>> {
    let failed = |code: NonZeroI32| {
        let mut message = ErrorMessage::default();
        message.code = Some(code);
        Error::Request {
            action: format!("dump {what}"),
            source: rtnetlink::Error::NetlinkError(message),
        }
    };
    let mut message = NetlinkMessage::from(request());
    message.header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let mut replies = handle
        .clone()
        .request(message)
        .map_err(Error::request(format!("dump {what}")))?;

    let mut items = Vec::new();
    let mut interrupted = false;
    // Read to the end even once interrupted: the rest of the answer is still
    // queued on the socket and must not be mistaken for the next reply.
    while let Some(reply) = replies.next().await {
        if reply.header.flags & NLM_F_DUMP_INTR != 0 {
            interrupted = true;
        }
        match reply.payload {
            NetlinkPayload::InnerMessage(inner) => items.extend(pick(inner)),
            // Some kernels report the interruption as EINTR instead of the flag.
            NetlinkPayload::Error(error) => match error.code {
                Some(code) if code.get() == -libc::EINTR => interrupted = true,
                Some(code) => return Err(failed(code)),
                None => {}
            },
            NetlinkPayload::Done(done) => match NonZeroI32::new(done.code) {
                Some(code) if code.get() == -libc::EINTR => interrupted = true,
                Some(code) => return Err(failed(code)),
                None => {}
            },
            _ => {}
        }
    }
    Ok(if interrupted {
        Attempt::Interrupted
    } else {
        Attempt::Complete(items)
    })
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::code::Code;
    use crate::netlink::Session;

    fn block_on<F: Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(future)
    }

    #[test]
    fn retries_until_complete() {
        let tries = Cell::new(0);
        let result = block_on(retry("test", MAX_ATTEMPTS, || {
            tries.set(tries.get() + 1);
            let n = tries.get();
            async move {
                Ok(if n < 3 {
                    Attempt::Interrupted
                } else {
                    Attempt::Complete(vec![n])
                })
            }
        }));
        assert_eq!(result.unwrap(), [3]);
        assert_eq!(tries.get(), 3);
    }

    #[test]
    fn gives_up_as_try_again_later() {
        let tries = Cell::new(0);
        let err = block_on(retry::<u8, _, _>("routes", MAX_ATTEMPTS, || {
            tries.set(tries.get() + 1);
            async { Ok(Attempt::Interrupted) }
        }))
        .unwrap_err();
        assert_eq!(tries.get(), MAX_ATTEMPTS);
        assert_eq!(err.code(), Code::TryAgainLater);
        assert_eq!(
            err.to_string(),
            "routes: dump interrupted 5 times by concurrent changes"
        );
    }

    #[test]
    fn stops_at_the_first_hard_error() {
        let tries = Cell::new(0);
        let err = block_on(retry::<u8, _, _>("links", MAX_ATTEMPTS, || {
            tries.set(tries.get() + 1);
            async { Err(Error::LinkVanished { name: "x".into() }) }
        }))
        .unwrap_err();
        assert_eq!(tries.get(), 1);
        assert!(matches!(err, Error::LinkVanished { .. }));
    }

    #[test]
    fn dumps_the_links_of_this_netns() {
        // Reading links needs no privileges; every netns has `lo`.
        let session = Session::open().unwrap();
        let links = session.block_on(links(session.handle())).unwrap();
        let lo = links.iter().find(|link| link.name == "lo").expect("lo");
        assert_eq!(lo.index, 1);
        assert_eq!(lo.mac, "00:00:00:00:00:00");
    }
}
