//! The roles of operators and console users: viewer < operator < admin.

use clustermgr_proto::OperatorRole;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Operator,
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "viewer" => Some(Self::Viewer),
            "operator" => Some(Self::Operator),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Operator => "operator",
            Self::Admin => "admin",
        }
    }
    pub fn from_record(r: OperatorRole) -> Option<Self> {
        match r {
            OperatorRole::Viewer => Some(Self::Viewer),
            OperatorRole::Operator => Some(Self::Operator),
            OperatorRole::Admin => Some(Self::Admin),
            OperatorRole::Unspecified => None,
        }
    }
    pub fn to_record(self) -> OperatorRole {
        match self {
            Self::Viewer => OperatorRole::Viewer,
            Self::Operator => OperatorRole::Operator,
            Self::Admin => OperatorRole::Admin,
        }
    }
}
