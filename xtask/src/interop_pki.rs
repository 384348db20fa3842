//! The test PKI of `cargo xtask interop`'s TLS pairings, made with openssl
//! for each run: a CA, a server certificate for 127.0.0.1 (and
//! `localhost`) signed by it, a client certificate (CN `interop-client`)
//! signed by it, and an NSS database trusting the CA, which is how
//! Chromium on Linux learns of a local CA (`$HOME/.pki/nssdb`).

use crate::tools::run;
use std::{
    path::{Path, PathBuf},
    process::Command,
};

/// The files, all PEM (keys PKCS#8, P-256).
pub(crate) struct Pki {
    pub(crate) ca: PathBuf,
    pub(crate) server_cert: PathBuf,
    pub(crate) server_key: PathBuf,
    pub(crate) client_cert: PathBuf,
    pub(crate) client_key: PathBuf,
    /// A home directory whose `.pki/nssdb` trusts [`ca`](Self::ca) for
    /// TLS servers (and nothing else): Chromium's `HOME`.
    pub(crate) home: PathBuf,
}

impl Pki {
    /// Makes a fresh PKI under `dir` (replacing what was there).
    pub(crate) fn make(dir: &Path) -> Result<Pki, String> {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let path = |name: &str| dir.join(name);
        let s = |p: &Path| p.display().to_string();
        let openssl = |args: &[&str]| run(Command::new("openssl").args(args));
        let key = |name: &str| {
            openssl(&[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                &s(&path(name)),
            ])
        };
        key("ca.key")?;
        openssl(&[
            "req",
            "-x509",
            "-new",
            "-key",
            &s(&path("ca.key")),
            "-sha256",
            "-days",
            "2",
            "-subj",
            "/CN=tern-interop-ca",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-out",
            &s(&path("ca.pem")),
        ])?;
        // A leaf signed by the CA: `name.pem` from `name.key`.
        let leaf = |name: &str, subject: &str, extensions: &str| -> Result<(), String> {
            key(&format!("{name}.key"))?;
            let csr = path(&format!("{name}.csr"));
            openssl(&[
                "req",
                "-new",
                "-key",
                &s(&path(&format!("{name}.key"))),
                "-subj",
                subject,
                "-out",
                &s(&csr),
            ])?;
            let ext = path(&format!("{name}.ext"));
            std::fs::write(&ext, extensions).map_err(|e| format!("{}: {e}", ext.display()))?;
            openssl(&[
                "x509",
                "-req",
                "-in",
                &s(&csr),
                "-CA",
                &s(&path("ca.pem")),
                "-CAkey",
                &s(&path("ca.key")),
                "-set_serial",
                &format!("{}", std::process::id() as u64 * 2 + name.len() as u64),
                "-sha256",
                "-days",
                "2",
                "-extfile",
                &s(&ext),
                "-out",
                &s(&path(&format!("{name}.pem"))),
            ])
        };
        leaf(
            "server",
            "/CN=127.0.0.1",
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
             extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )?;
        leaf(
            "client",
            "/CN=interop-client",
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
             extendedKeyUsage=clientAuth\n",
        )?;
        let home = path("home");
        let nssdb = home.join(".pki").join("nssdb");
        std::fs::create_dir_all(&nssdb).map_err(|e| format!("{}: {e}", nssdb.display()))?;
        let db = format!("sql:{}", nssdb.display());
        run(Command::new("certutil").args(["-N", "--empty-password", "-d", &db]))?;
        // "C,,": a CA trusted to issue TLS server certificates only.
        run(Command::new("certutil").args([
            "-A",
            "-d",
            &db,
            "-n",
            "tern-interop-ca",
            "-t",
            "C,,",
            "-i",
            &s(&path("ca.pem")),
        ]))?;
        Ok(Pki {
            ca: path("ca.pem"),
            server_cert: path("server.pem"),
            server_key: path("server.key"),
            client_cert: path("client.pem"),
            client_key: path("client.key"),
            home,
        })
    }
}
