//! The runtime pieces every Portcullis daemon (and the CLI's local listeners) share, kept out
//! of `portcullis-proto` so that the wire types stay free of I/O and of a runtime:
//! - [`copy`]: one direction of a relay, through a buffer held only while bytes are in it;
//! - [`accept`]: what a listener does when `accept` fails (a connection's own failure is
//!   passed over, running out of descriptors or memory backs off), and the one driver every
//!   listener accepts through;
//! - [`retry`]: the waits between attempts to reach a peer (exponential, jittered, capped);
//! - [`ops`]: where the ops listener (metrics, health, readiness) listens.
//! - [`read_ahead`]: large reads of the socket under a TLS layer (rustls reads 4 KiB at a
//!   time).
//! - [`proxy_header`]: the PROXY protocol header a trusted load balancer opens a connection
//!   with, and which balancers are trusted.

pub mod accept;
pub mod copy;
pub mod ops;
pub mod proxy_header;
pub mod read_ahead;
pub mod retry;
