//! Compiled code kept on disk, keyed by the component's SHA-256 and the engine's
//! compatibility hash, so that a restart (or another tenant with the same plugin)
//! does not compile again. The folder must be private to abacsync: loading a cached
//! artifact runs its machine code.

use std::fs;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io;
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

/// A folder of compiled components.
#[derive(Debug, Clone)]
pub struct CompileCache {
    dir: PathBuf,
    engine_key: String,
}

impl CompileCache {
    /// Use (and create, mode 0700) `dir` for `engine`'s artifacts.
    pub fn open(dir: impl Into<PathBuf>, engine: &Engine) -> io::Result<Self> {
        let dir = dir.into();
        fs::create_dir_all(&dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
        }
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(Self {
            dir,
            engine_key: format!("{:016x}", hasher.finish()),
        })
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path_for(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}-{}.cwasm", self.engine_key))
    }

    /// The cached component for `sha256`, if there is a usable one. A stale or corrupt
    /// artifact is removed and `None` returned, so the caller compiles afresh.
    pub fn load(&self, engine: &Engine, sha256: &str) -> Option<Component> {
        let path = self.path_for(sha256);
        // Read into memory rather than map the file: a file truncated under a mapping
        // would crash the process (SIGBUS) when its pages are touched.
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return None,
            Err(err) => {
                tracing::warn!(path = %path.display(), error = %err, "cannot read compiled plugin");
                return None;
            }
        };
        // SAFETY: the bytes come from `store` below (`Component::serialize`), in a
        // folder only this user can write (0700, see `open`); wasmtime checks the
        // artifact's header and compatibility before using it.
        match unsafe { Component::deserialize(engine, &bytes) } {
            Ok(component) => Some(component),
            Err(err) => {
                tracing::warn!(path = %path.display(), error = %err, "dropping unusable compiled plugin");
                let _ = fs::remove_file(&path);
                None
            }
        }
    }

    /// Write `component`'s compiled code for `sha256`, atomically.
    pub fn store(&self, sha256: &str, component: &Component) -> io::Result<PathBuf> {
        let bytes = component.serialize().map_err(io::Error::other)?;
        let path = self.path_for(sha256);
        let tmp = self
            .dir
            .join(format!(".{sha256}.{}.tmp", std::process::id()));
        fs::write(&tmp, bytes)?;
        fs::rename(&tmp, &path)?;
        Ok(path)
    }
}
