//! A node's distribution, from its inventory (the agent reads `ID` and `VERSION_ID` of
//! `/etc/os-release`): the package family it installs, and — for an online install — the
//! release Gluu publishes its 4.2 packages for, whose apt suite is also the suffix of the package
//! version (`gluu-server=4.2.3~focal` from the `focal` suite; `gluu-server-4.2.3` on rpm).

use clustermgr_proto::{Inventory, PackageRepository};

/// The package format a node installs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Deb,
    Rpm,
}

impl Family {
    /// The package file's extension (and the push's `format`).
    pub fn extension(self) -> &'static str {
        match self {
            Family::Deb => "deb",
            Family::Rpm => "rpm",
        }
    }

    /// The node's family: from its package manager when the inventory names one, else from the
    /// distribution's id.
    pub fn of(inv: &Inventory) -> Option<Family> {
        match inv.package_manager.as_str() {
            "apt" => Some(Family::Deb),
            "dnf" | "yum" => Some(Family::Rpm),
            _ => Self::of_os(&inv.os_id),
        }
    }

    /// The family of an os-release `ID`.
    pub fn of_os(os_id: &str) -> Option<Family> {
        OS_FAMILIES
            .iter()
            .find(|(id, _)| *id == os_id)
            .map(|(_, f)| *f)
    }
}

/// Distributions a node may run (os-release `ID`), by family. Offline installs take any of them
/// (the pushed package is the operator's); online installs need a [`Release`].
const OS_FAMILIES: &[(&str, Family)] = &[
    ("debian", Family::Deb),
    ("ubuntu", Family::Deb),
    ("rhel", Family::Rpm),
    ("centos", Family::Rpm),
    ("rocky", Family::Rpm),
    ("almalinux", Family::Rpm),
    ("ol", Family::Rpm),
    ("fedora", Family::Rpm),
];

/// The distributions named in a refusal of an unknown one (offline installs).
pub const OS_NAMES: &str = "Debian, Ubuntu, RHEL, CentOS, Rocky, AlmaLinux";

/// A distribution release Gluu publishes 4.2 packages for (Gluu 4.2.3's setup supports exactly
/// these: Ubuntu 18 and 20, Debian 9 and 10, CentOS and RHEL 7 and 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Release {
    /// os-release `ID`.
    pub id: &'static str,
    /// os-release `VERSION_ID`, or its major part (`8` matches RHEL's `8.4`).
    pub version: &'static str,
    pub family: Family,
    /// The apt suite of Gluu's repository, which is also the package version's suffix
    /// (`4.2.3~bionic`); None on rpm.
    pub suite: Option<&'static str>,
}

pub const RELEASES: &[Release] = &[
    Release {
        id: "ubuntu",
        version: "18.04",
        family: Family::Deb,
        suite: Some("bionic"),
    },
    Release {
        id: "ubuntu",
        version: "20.04",
        family: Family::Deb,
        suite: Some("focal"),
    },
    Release {
        id: "debian",
        version: "9",
        family: Family::Deb,
        suite: Some("stretch"),
    },
    Release {
        id: "debian",
        version: "10",
        family: Family::Deb,
        suite: Some("buster"),
    },
    Release {
        id: "centos",
        version: "7",
        family: Family::Rpm,
        suite: None,
    },
    Release {
        id: "centos",
        version: "8",
        family: Family::Rpm,
        suite: None,
    },
    Release {
        id: "rhel",
        version: "7",
        family: Family::Rpm,
        suite: None,
    },
    Release {
        id: "rhel",
        version: "8",
        family: Family::Rpm,
        suite: None,
    },
];

/// Why a node's distribution cannot take an online install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DistroError {
    /// The inventory has no distribution id.
    Unknown,
    /// A distribution (or release) Gluu publishes no packages for.
    Unsupported { id: String, version: String },
}

impl std::fmt::Display for DistroError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DistroError::Unknown => write!(
                f,
                "the node's distribution is unknown (no ID in its /etc/os-release); online installs support {}",
                supported()
            ),
            DistroError::Unsupported { id, version } => write!(
                f,
                "{id} {version} is not a distribution Gluu publishes Gluu Server packages for; online installs support {}",
                supported()
            ),
        }
    }
}

impl std::error::Error for DistroError {}

impl Release {
    /// The release of a node's os-release `ID` and `VERSION_ID`.
    pub fn of(os_id: &str, os_version: &str) -> Result<&'static Release, DistroError> {
        if os_id.is_empty() {
            return Err(DistroError::Unknown);
        }
        RELEASES
            .iter()
            .find(|r| {
                r.id == os_id
                    && (os_version == r.version
                        || os_version
                            .strip_prefix(r.version)
                            .is_some_and(|rest| rest.starts_with('.')))
            })
            .ok_or_else(|| DistroError::Unsupported {
                id: os_id.to_string(),
                version: os_version.to_string(),
            })
    }

    /// The exact version of Gluu's package to pin: `VERSION~SUITE` on deb, `VERSION` on rpm.
    pub fn package_version(&self, version: &str) -> String {
        match self.suite {
            Some(suite) => format!("{version}~{suite}"),
            None => version.to_string(),
        }
    }

    /// What an online install of `name` at `version` asks this release's node for, with Gluu's
    /// repository (when given) on the release's suite.
    pub fn pin(&self, name: &str, version: &str, repository: Option<&PackageRepository>) -> Pin {
        let exact = self.package_version(version);
        let repository = repository.map(|r| {
            let mut r = r.clone();
            // Gluu publishes one apt suite per release (bionic, focal, stretch, buster; their
            // `-testing` and `-devel` beside them): a configured suite of another release (or
            // the generic `stable`) gives way to the node's.
            if let Some(suite) = self.suite
                && !r.suite.starts_with(suite)
            {
                r.suite = suite.to_string();
            }
            r
        });
        Pin {
            spec: format!("{name}={exact}"),
            shown: match self.family {
                Family::Deb => format!("{name}={exact}"),
                Family::Rpm => format!("{name}-{exact}"),
            },
            repository,
        }
    }

    /// For messages: `Ubuntu 20.04 (focal)`, `CentOS 7`.
    pub fn display(&self) -> String {
        let name = match self.id {
            "ubuntu" => "Ubuntu",
            "debian" => "Debian",
            "centos" => "CentOS",
            "rhel" => "RHEL",
            other => other,
        };
        match self.suite {
            Some(s) => format!("{name} {} ({s})", self.version),
            None => format!("{name} {}", self.version),
        }
    }
}

/// An online install's package, pinned.
#[derive(Debug, Clone, PartialEq)]
pub struct Pin {
    /// What the agent is asked for: `NAME=VERSION` (it asks yum and dnf for `NAME-VERSION`).
    pub spec: String,
    /// As the node's package manager spells it: `gluu-server=4.2.3~focal`, `gluu-server-4.2.3`.
    pub shown: String,
    /// Gluu's repository with the suite of the node's release.
    pub repository: Option<PackageRepository>,
}

/// Every supported release, for messages.
pub fn supported() -> String {
    RELEASES
        .iter()
        .map(Release::display)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_ids_map_to_gluus_suites_and_pinned_versions() {
        // (ID, VERSION_ID) -> (family, suite, pinned version of 4.2.3)
        let table: &[(&str, &str, Family, Option<&str>, &str)] = &[
            (
                "ubuntu",
                "18.04",
                Family::Deb,
                Some("bionic"),
                "4.2.3~bionic",
            ),
            ("ubuntu", "20.04", Family::Deb, Some("focal"), "4.2.3~focal"),
            ("debian", "9", Family::Deb, Some("stretch"), "4.2.3~stretch"),
            ("debian", "10", Family::Deb, Some("buster"), "4.2.3~buster"),
            ("centos", "7", Family::Rpm, None, "4.2.3"),
            ("centos", "8", Family::Rpm, None, "4.2.3"),
            ("rhel", "7.9", Family::Rpm, None, "4.2.3"),
            ("rhel", "8.4", Family::Rpm, None, "4.2.3"),
            ("rhel", "8", Family::Rpm, None, "4.2.3"),
        ];
        for (id, version, family, suite, pinned) in table {
            let r = Release::of(id, version).unwrap_or_else(|e| panic!("{id} {version}: {e}"));
            assert_eq!(r.family, *family, "{id} {version}");
            assert_eq!(r.suite, *suite, "{id} {version}");
            assert_eq!(r.package_version("4.2.3"), *pinned, "{id} {version}");
            assert_eq!(Family::of_os(id), Some(*family), "{id}");
        }
    }

    #[test]
    fn a_pin_takes_the_nodes_suite_unless_the_configured_one_is_of_its_release() {
        let repo = |suite: &str| PackageRepository {
            name: "gluu".into(),
            url: "https://repo.gluu.org/ubuntu/".into(),
            suite: suite.into(),
            component: "main".into(),
            signing_key: "k".into(),
        };
        // (os, version, configured suite) -> (spec, shown, suite configured on the node)
        let table: &[(&str, &str, &str, &str, &str, &str)] = &[
            (
                "ubuntu",
                "20.04",
                "stable",
                "gluu-server=4.2.3~focal",
                "gluu-server=4.2.3~focal",
                "focal",
            ),
            (
                "ubuntu",
                "20.04",
                "",
                "gluu-server=4.2.3~focal",
                "gluu-server=4.2.3~focal",
                "focal",
            ),
            (
                "ubuntu",
                "20.04",
                "bionic",
                "gluu-server=4.2.3~focal",
                "gluu-server=4.2.3~focal",
                "focal",
            ),
            (
                "ubuntu",
                "20.04",
                "focal-testing",
                "gluu-server=4.2.3~focal",
                "gluu-server=4.2.3~focal",
                "focal-testing",
            ),
            (
                "debian",
                "10",
                "stable",
                "gluu-server=4.2.3~buster",
                "gluu-server=4.2.3~buster",
                "buster",
            ),
            (
                "debian",
                "9",
                "stretch",
                "gluu-server=4.2.3~stretch",
                "gluu-server=4.2.3~stretch",
                "stretch",
            ),
            (
                "centos",
                "7",
                "stable",
                "gluu-server=4.2.3",
                "gluu-server-4.2.3",
                "stable",
            ),
            (
                "rhel",
                "8.4",
                "",
                "gluu-server=4.2.3",
                "gluu-server-4.2.3",
                "",
            ),
        ];
        for (id, version, suite, spec, shown, configured) in table {
            let r = Release::of(id, version).unwrap();
            let pin = r.pin("gluu-server", "4.2.3", Some(&repo(suite)));
            assert_eq!(pin.spec, *spec, "{id} {version}");
            assert_eq!(pin.shown, *shown, "{id} {version}");
            assert_eq!(
                pin.repository.unwrap().suite,
                *configured,
                "{id} {version} {suite}"
            );
            assert_eq!(r.pin("gluu-server", "4.2.3", None).repository, None);
        }
    }

    #[test]
    fn unknown_and_unsupported_distributions_are_refused_naming_the_supported_ones() {
        let table: &[(&str, &str, DistroError)] = &[
            ("", "", DistroError::Unknown),
            (
                "debian",
                "12",
                DistroError::Unsupported {
                    id: "debian".into(),
                    version: "12".into(),
                },
            ),
            (
                "ubuntu",
                "18.10",
                DistroError::Unsupported {
                    id: "ubuntu".into(),
                    version: "18.10".into(),
                },
            ),
            (
                "ubuntu",
                "22.04",
                DistroError::Unsupported {
                    id: "ubuntu".into(),
                    version: "22.04".into(),
                },
            ),
            (
                "rhel",
                "80",
                DistroError::Unsupported {
                    id: "rhel".into(),
                    version: "80".into(),
                },
            ),
            (
                "rocky",
                "8.6",
                DistroError::Unsupported {
                    id: "rocky".into(),
                    version: "8.6".into(),
                },
            ),
            (
                "arch",
                "",
                DistroError::Unsupported {
                    id: "arch".into(),
                    version: String::new(),
                },
            ),
        ];
        for (id, version, want) in table {
            let e = Release::of(id, version).unwrap_err();
            assert_eq!(&e, want, "{id} {version}");
            let msg = e.to_string();
            for name in [
                "Ubuntu 18.04 (bionic)",
                "Ubuntu 20.04 (focal)",
                "Debian 9 (stretch)",
                "Debian 10 (buster)",
                "CentOS 7",
                "CentOS 8",
                "RHEL 7",
                "RHEL 8",
            ] {
                assert!(msg.contains(name), "{name} missing: {msg}");
            }
        }
    }

    #[test]
    fn the_family_comes_from_the_package_manager_then_the_distribution() {
        let inv = |pm: &str, id: &str| Inventory {
            package_manager: pm.into(),
            os_id: id.into(),
            ..Default::default()
        };
        let table: &[(&str, &str, Option<Family>)] = &[
            ("apt", "", Some(Family::Deb)),
            ("dnf", "", Some(Family::Rpm)),
            ("yum", "ubuntu", Some(Family::Rpm)),
            ("", "centos", Some(Family::Rpm)),
            ("", "rocky", Some(Family::Rpm)),
            ("", "debian", Some(Family::Deb)),
            ("", "arch", None),
            ("", "", None),
        ];
        for (pm, id, want) in table {
            assert_eq!(Family::of(&inv(pm, id)), *want, "{pm} {id}");
        }
    }
}
