//! The server's socket file (claimed, chmod 0660, removed only if still
//! ours) and SIGINT/SIGTERM as bytes on a socket pair.

use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use mio::net::{UnixListener, UnixStream};
use mio::Interest;

use super::{ServerError, SIGNAL};

/// The listening socket file; removed on drop if it is still ours.
pub(super) struct SocketFile {
    pub(super) path: PathBuf,
    pub(super) dev: u64,
    pub(super) ino: u64,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if let Ok(m) = std::fs::symlink_metadata(&self.path) {
            if m.dev() == self.dev && m.ino() == self.ino {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// SIGINT/SIGTERM delivered as bytes on a socket pair.
pub(super) struct Signals {
    pub(super) pipe: UnixStream,
    pub(super) ids: Vec<signal_hook::SigId>,
    /// Set once shutdown starts: another signal then exits at once.
    pub(super) terminating: Arc<AtomicBool>,
}

impl Signals {
    pub(super) fn install(registry: &mio::Registry) -> io::Result<Signals> {
        let (read, write) = std::os::unix::net::UnixStream::pair()?;
        read.set_nonblocking(true)?;
        write.set_nonblocking(true)?;
        let mut read = UnixStream::from_std(read);
        registry.register(&mut read, SIGNAL, Interest::READABLE)?;
        let terminating = Arc::new(AtomicBool::new(false));
        let mut ids = Vec::new();
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            ids.push(signal_hook::flag::register_conditional_shutdown(
                sig,
                1,
                terminating.clone(),
            )?);
            ids.push(signal_hook::low_level::pipe::register(
                sig,
                write.try_clone()?,
            )?);
        }
        Ok(Signals {
            pipe: read,
            ids,
            terminating,
        })
    }

    /// Drains the pipe; true if a signal arrived.
    pub(super) fn take(&mut self) -> bool {
        let mut got = false;
        let mut buf = [0u8; 64];
        loop {
            match self.pipe.read(&mut buf) {
                Ok(0) => return got,
                Ok(_) => got = true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return got,
            }
        }
    }
}

impl Drop for Signals {
    fn drop(&mut self) {
        for id in self.ids.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}

/// Makes sure `path` is free to bind, then binds it (mode 0660).
pub(super) fn claim_socket(path: &Path) -> Result<UnixListener, ServerError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(dir)
                .map_err(|source| ServerError::CreateDir {
                    path: dir.to_path_buf(),
                    source,
                })?;
        }
    }
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(ServerError::Probe {
                path: path.to_path_buf(),
                source,
            })
        }
        Ok(m) if !m.file_type().is_socket() => {
            return Err(ServerError::NotASocket(path.to_path_buf()))
        }
        Ok(_) => match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => return Err(ServerError::AlreadyRunning(path.to_path_buf())),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                // A leftover of a daemon that did not exit cleanly.
                std::fs::remove_file(path).map_err(|source| ServerError::Bind {
                    path: path.to_path_buf(),
                    source,
                })?;
            }
            Err(source) => {
                return Err(ServerError::Probe {
                    path: path.to_path_buf(),
                    source,
                })
            }
        },
    }
    let listener = UnixListener::bind(path).map_err(|source| ServerError::Bind {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(listener)
}

/// Sets the socket's mode and remembers its identity for removal.
pub(super) fn socket_file(path: &Path) -> Result<SocketFile, ServerError> {
    let bind_err = |source| ServerError::Bind {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::symlink_metadata(path).map_err(bind_err)?;
    let file = SocketFile {
        path: path.to_path_buf(),
        dev: meta.dev(),
        ino: meta.ino(),
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(bind_err)?;
    Ok(file)
}
