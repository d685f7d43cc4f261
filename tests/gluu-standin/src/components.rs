//! The components Gluu 4.2.3's setup installs, read from setup.properties the way its
//! `load_properties` reads them: only the exact words `True` and `False` become booleans; any
//! other non-empty value stays a Python string and is therefore true (`installSaml=false`
//! installs Shibboleth); a missing switch keeps setup.py's default.

use crate::layout::Layout;
use crate::props::Props;
use anyhow::{Context, Result};
use std::fs;

/// (switch, default in 4.2.3's setup.py, the directory its install leaves under the Gluu root)
pub const SWITCHES: [(&str, bool, Option<&str>); 11] = [
    ("installOxAuth", true, Some("opt/gluu/jetty/oxauth")),
    ("installOxTrust", true, Some("opt/gluu/jetty/identity")),
    ("installHttpd", true, None),
    ("installSaml", false, Some("opt/shibboleth-idp/conf")),
    ("installOxAuthRP", false, Some("opt/gluu/jetty/oxauth-rp")),
    ("installPassport", false, Some("opt/gluu/node/passport")),
    ("installGluuRadius", false, Some("opt/gluu/radius")),
    ("installScimServer", false, Some("opt/gluu/jetty/scim")),
    ("installFido2", false, Some("opt/gluu/jetty/fido2")),
    ("installCasa", false, Some("opt/gluu/jetty/casa")),
    ("installOxd", false, Some("opt/oxd-server")),
];

/// Whether setup.py would install the component behind `key`.
pub fn on(props: &Props, key: &str) -> bool {
    match props.get(key) {
        Some("False") | Some("") => false,
        Some(_) => true,
        None => SWITCHES
            .iter()
            .find(|(k, _, _)| *k == key)
            .is_some_and(|(_, d, _)| *d),
    }
}

/// Records every switch as setup.py does in setup.properties.last (`True`/`False`), prints the
/// selection, and leaves each selected component's directory.
pub fn install(layout: &Layout, props: &mut Props) -> Result<()> {
    let mut chosen = Vec::new();
    for (key, _, dir) in SWITCHES {
        let on = on(props, key);
        props.set(key, if on { "True" } else { "False" });
        if on {
            chosen.push(key.trim_start_matches("install"));
            if let Some(dir) = dir {
                let d = layout.c(dir);
                fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
            }
        }
    }
    println!("Components: {}", chosen.join(", "));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switches_read_as_python_reads_them() {
        let p = Props::parse(
            "installSaml=false\ninstallOxTrust=False\ninstallCasa=True\ninstallOxd=\n",
        );
        assert!(on(&p, "installSaml"), "a non-empty string is true");
        assert!(!on(&p, "installOxTrust"));
        assert!(on(&p, "installCasa"));
        assert!(!on(&p, "installOxd"));
        assert!(on(&p, "installOxAuth"), "missing: the default");
        assert!(!on(&p, "installPassport"), "missing: the default");
    }
}
