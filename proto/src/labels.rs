//! The words the API and the CLI use for stored enums (job states, metrics refusals, node roles).

use crate::v1;

impl v1::JobState {
    /// running | succeeded | failed | timed-out | interrupted
    pub const fn label(self) -> &'static str {
        match self {
            Self::Unspecified => "unknown",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::TimedOut => "timed-out",
            Self::Interrupted => "interrupted",
        }
    }
    pub const fn is_finished(self) -> bool {
        !matches!(self, Self::Running | Self::Unspecified)
    }
}

impl v1::LogType {
    /// Every log type a node has, in the order they are listed.
    pub const ALL: [Self; 6] = [
        Self::Oxauth,
        Self::Oxtrust,
        Self::Httpd,
        Self::Ldap,
        Self::Redis,
        Self::Agent,
    ];

    /// any | oxauth | oxtrust | httpd | ldap | redis | agent
    pub const fn label(self) -> &'static str {
        match self {
            Self::Unspecified => "any",
            Self::Oxauth => "oxauth",
            Self::Oxtrust => "oxtrust",
            Self::Httpd => "httpd",
            Self::Ldap => "ldap",
            Self::Redis => "redis",
            Self::Agent => "agent",
        }
    }
}

impl v1::MetricsRefusal {
    /// not_approved | batch_too_large | out_of_window | invalid | rate | series_cap
    pub const fn label(self) -> &'static str {
        match self {
            Self::Unspecified => "unspecified",
            Self::NotApproved => "not_approved",
            Self::BatchTooLarge => "batch_too_large",
            Self::OutOfWindow => "out_of_window",
            Self::Invalid => "invalid",
            Self::Rate => "rate",
            Self::SeriesCap => "series_cap",
        }
    }
}

impl v1::NodeRole {
    /// gluu-node | cache | lb
    pub fn label(self) -> &'static str {
        match self {
            Self::Unspecified => "unknown",
            Self::GluuNode => "gluu-node",
            Self::Cache => "cache",
            Self::Lb => "lb",
        }
    }
    pub fn from_label(s: &str) -> Option<Self> {
        match s {
            "gluu-node" => Some(Self::GluuNode),
            "cache" => Some(Self::Cache),
            "lb" => Some(Self::Lb),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::LogType;

    /// `LogType::ALL` holds every type but the unspecified one, each once.
    #[test]
    fn every_log_type_is_listed() {
        let defined: Vec<LogType> = (1..64).filter_map(|i| LogType::try_from(i).ok()).collect();
        assert_eq!(defined, LogType::ALL);
    }
}
