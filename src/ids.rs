//! Ids that cross module boundaries, as types: an answer's id (made by `chat`, named by
//! feedback, kept by the log and Redis) and a conversation's (made by the widget, kept by the
//! log). Each is parsed once where it enters; past that, a value of the type is valid.

use serde::{Deserialize, Serialize};

/// Why a string is not an id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct IdError(&'static str);

/// 1 to 64 ASCII letters, digits, `-` or `_`: what every id the API takes is made of (answers,
/// conversations, quiz items).
pub fn well_formed(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The id of one answer, for feedback (`POST /v1/feedback`) and the log.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(transparent)]
#[schema(value_type = String)]
pub struct AnswerId(String);

impl AnswerId {
    /// A new, random id (32 lower-case hex digits).
    pub fn new() -> AnswerId {
        AnswerId(uuid::Uuid::new_v4().simple().to_string())
    }

    /// An id as a client or a store gives it: 1 to 64 letters, digits, `-` or `_`.
    pub fn parse(id: &str) -> Result<AnswerId, IdError> {
        if well_formed(id) {
            Ok(AnswerId(id.to_string()))
        } else {
            Err(IdError(
                "`answer_id` must be 1 to 64 letters, digits, `-` or `_`",
            ))
        }
    }

    /// An id read back from a store this type wrote (the log's database, Redis): it was
    /// parsed on its way in.
    pub fn from_store(id: String) -> AnswerId {
        AnswerId(id)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for AnswerId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<String> for AnswerId {
    fn eq(&self, other: &String) -> bool {
        &self.0 == other
    }
}

impl PartialEq<&str> for AnswerId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl Default for AnswerId {
    fn default() -> Self {
        AnswerId::new()
    }
}

impl std::fmt::Display for AnswerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for AnswerId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let id = String::deserialize(deserializer)?;
        AnswerId::parse(&id).map_err(serde::de::Error::custom)
    }
}

/// The anonymous id the widget makes for one conversation (never an identity).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(transparent)]
#[schema(value_type = String)]
pub struct ConversationId(String);

impl ConversationId {
    /// 1 to 64 letters, digits, `-` or `_`.
    pub fn parse(id: &str) -> Result<ConversationId, IdError> {
        if well_formed(id) {
            Ok(ConversationId(id.to_string()))
        } else {
            Err(IdError(
                "`conversation_id` must be 1 to 64 letters, digits, `-` or `_`",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ConversationId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ConversationId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let id = String::deserialize(deserializer)?;
        ConversationId::parse(&id).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_parsed_once_and_new_answer_ids_are_well_formed() {
        for good in ["a", "83fe0c1d2e", "conv_1-x", &"z".repeat(64)] {
            assert_eq!(
                AnswerId::parse(good).map(|i| i.to_string()),
                Ok(good.to_string())
            );
            assert!(ConversationId::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "has space", "ü", "a/b", &"z".repeat(65)] {
            assert!(AnswerId::parse(bad).is_err(), "{bad}");
            assert!(ConversationId::parse(bad).is_err(), "{bad}");
        }
        let made = AnswerId::new();
        assert_eq!(made.as_str().len(), 32);
        assert_eq!(AnswerId::parse(made.as_str()), Ok(made.clone()));
        assert_ne!(made, AnswerId::new());
        let json: Result<AnswerId, _> = serde_json::from_str("\"bad id\"");
        assert!(json.is_err());
        assert_eq!(
            serde_json::to_string(&made).ok(),
            Some(format!("\"{made}\""))
        );
    }
}
