//! systemd's readiness protocol (`sd_notify(3)`): one datagram with
//! `KEY=value` lines to the socket named by `$NOTIFY_SOCKET` (a path, or an
//! abstract name when it starts with `@`). Without the variable (not run by
//! systemd with `Type=notify`) nothing is sent.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Sends `state` (e.g. `"READY=1"`); `Ok(false)` when there is no
/// `$NOTIFY_SOCKET`.
pub fn notify(state: &str) -> std::io::Result<bool> {
    match std::env::var_os("NOTIFY_SOCKET") {
        Some(socket) => send(&socket, state).map(|()| true),
        None => Ok(false),
    }
}

/// Sends `state` to `socket` (a path, or `@name` for an abstract socket).
fn send(socket: &std::ffi::OsStr, state: &str) -> std::io::Result<()> {
    let bytes = socket.as_bytes();
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name)?
        }
        None => SocketAddr::from_pathname(socket)?,
    };
    UnixDatagram::unbound()?.send_to_addr(state.as_bytes(), &addr)?;
    Ok(())
}

/// [`notify`], with a failure logged rather than returned: systemd not
/// hearing from us is worth a line, not a stop.
pub fn notify_or_log(state: &str) {
    if let Err(e) = notify(state) {
        tracing::warn!(error = %e, "could not notify systemd (NOTIFY_SOCKET)");
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixDatagram;

    fn received(listener: &UnixDatagram) -> Vec<u8> {
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        buf[..n].to_vec()
    }

    #[test]
    fn one_datagram_to_a_path_or_an_abstract_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        super::send(path.as_os_str(), "READY=1\nMAINPID=42").unwrap();
        assert_eq!(received(&listener), b"READY=1\nMAINPID=42");

        use std::os::linux::net::SocketAddrExt;
        let name = format!("portcullis-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(&name).unwrap();
        let listener = UnixDatagram::bind_addr(&addr).unwrap();
        super::send(format!("@{name}").as_ref(), "READY=1").unwrap();
        assert_eq!(received(&listener), b"READY=1");
    }
}
