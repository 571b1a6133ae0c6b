//! A throwaway PKI for TLS tests, made with the `openssl` command: a CA, a
//! second CA that signed nothing here, a server certificate for
//! `localhost`, `127.0.0.1` and the addresses asked for, and a client
//! certificate. Runs: openssl.

use std::path::{Path, PathBuf};

use super::cmd;

/// The files, all PEM, in the directory given to [`Pki::new`].
pub struct Pki {
    pub ca: PathBuf,
    pub other_ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = cmd("openssl", args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA `NAME.crt` with key `NAME.key` in `dir`.
fn make_ca(dir: &Path, name: &str) {
    let subj = format!("/CN={name}");
    let (key, crt) = (format!("{name}.key"), format!("{name}.crt"));
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &subj,
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout",
            &key,
            "-out",
            &crt,
        ],
    );
}

/// `NAME.crt` (key `NAME.key`) signed by CA `ca`, with the extensions
/// `ext` (lines of an openssl extfile).
fn make_cert(dir: &Path, ca: &str, name: &str, ext: &str) {
    std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
    let subj = format!("/CN={name}");
    let (key, csr, crt, extf) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.crt"),
        format!("{name}.ext"),
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            &subj,
            "-keyout",
            &key,
            "-out",
            &csr,
        ],
    );
    let (ca_crt, ca_key) = (format!("{ca}.crt"), format!("{ca}.key"));
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_crt,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &extf,
            "-out",
            &crt,
        ],
    );
}

impl Pki {
    /// Makes the files in `dir`; the server certificate also names the IP
    /// addresses `ips`. etcd 3.4's JSON gateway presents the server
    /// certificate as a client too, hence `clientAuth` on it.
    pub fn new(dir: &Path, ips: &[&str]) -> Pki {
        make_ca(dir, "ca");
        make_ca(dir, "other-ca");
        let mut san = String::from("DNS:localhost,IP:127.0.0.1");
        for ip in ips {
            san.push_str(&format!(",IP:{ip}"));
        }
        make_cert(
            dir,
            "ca",
            "server",
            &format!("subjectAltName={san}\nextendedKeyUsage=serverAuth,clientAuth\n"),
        );
        make_cert(dir, "ca", "client", "extendedKeyUsage=clientAuth\n");
        Pki {
            ca: dir.join("ca.crt"),
            other_ca: dir.join("other-ca.crt"),
            server_cert: dir.join("server.crt"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.crt"),
            client_key: dir.join("client.key"),
        }
    }
}
