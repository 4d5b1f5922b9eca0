//! Free TCP ports on 127.0.0.1.

use std::collections::HashSet;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::Mutex;

use crate::error::{Error, Result};

/// A TCP port on 127.0.0.1 that was free a moment ago and that this process has not handed
/// out before.
///
/// The port is found by binding `127.0.0.1:0` and is released at once, so another process
/// may still take it before the caller binds it: servers the kit starts retry with a new
/// port when their bind fails.
pub fn free_port() -> Result<u16> {
    static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    for _ in 0..100 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(|e| Error::io("bind", "127.0.0.1:0", e))?;
        let port = listener
            .local_addr()
            .map_err(|e| Error::io("query address of", "127.0.0.1:0", e))?
            .port();
        let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
        if handed_out.get_or_insert_with(HashSet::new).insert(port) {
            return Ok(port);
        }
    }
    Err(Error::Invalid(
        "no free loopback port found in 100 tries".into(),
    ))
}
