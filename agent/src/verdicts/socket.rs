//! The verdict socket: a Unix stream socket; every client gets each later
//! verdict as one JSON line until it hangs up. Local only (file mode 0600):
//! verdicts name pods and addresses.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt as _;
use tokio::net::UnixListener;
use tokio::sync::broadcast::error::RecvError;

use super::Hub;

/// Errors setting up the socket.
#[derive(Debug, thiserror::Error)]
#[error("cannot serve verdicts on {path}")]
pub struct Error {
    /// The socket path.
    pub path: PathBuf,
    /// Why.
    #[source]
    pub source: std::io::Error,
}

/// Binds `path` (replacing a stale socket of an earlier agent) and serves
/// until the task is dropped.
pub async fn serve(path: &Path, hub: Hub) -> Result<(), Error> {
    let err = |source| Error {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(err(e)),
        _ => {}
    }
    let listener = UnixListener::bind(path).map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let mut lines = hub.subscribe();
        tokio::spawn(async move {
            loop {
                let line = match lines.recv().await {
                    Ok(line) => line,
                    Err(RecvError::Lagged(missed)) => format!("{{\"lost\":{missed}}}").into(),
                    Err(RecvError::Closed) => return,
                };
                if stream.write_all(line.as_bytes()).await.is_err() || stream.write_all(b"\n").await.is_err()
                {
                    return;
                }
            }
        });
    }
}
