//! Closed sets of names that vemo reads from job files and writes into its outputs: the
//! towers ([`Tower`]) and the tasks ([`Task`]). Each is parsed once, where it enters (serde,
//! `FromStr`), and matched exhaustively from there on; its string is the same in files, on
//! the command line and in messages.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A name outside a closed set: the error of the `FromStr` of vemo's named enums. Its message
/// lists the names that exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownName {
    /// What the set names, singular (`task`, `image architecture`).
    pub kind: &'static str,
    /// The name given.
    pub name: String,
    /// Every name of the set.
    pub known: Vec<&'static str>,
}

impl UnknownName {
    /// The variant of `all` whose `name` is `text`, or the error listing the names of `all`.
    pub fn parse<T: Copy>(
        kind: &'static str,
        all: &[T],
        name: fn(T) -> &'static str,
        text: &str,
    ) -> Result<T, UnknownName> {
        all.iter()
            .copied()
            .find(|v| name(*v) == text)
            .ok_or_else(|| UnknownName {
                kind,
                name: text.to_string(),
                known: all.iter().map(|v| name(*v)).collect(),
            })
    }
}

impl fmt::Display for UnknownName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} `{}` is not available; {}s are {}",
            self.kind,
            self.name,
            self.kind,
            self.known.join(", ")
        )
    }
}

impl std::error::Error for UnknownName {}

/// A tower of a bundle: the encoder an embedding column comes from. Its name starts the
/// column's (`text_emb_e6`) and exit head's (`text.e6`) names and fills the `tower` column of
/// the long table and the `vemo.tower` field metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "&'static str")]
pub enum Tower {
    /// The caption encoder: `text`.
    Text,
    /// The image encoder: `image`.
    Image,
}

impl Tower {
    /// Every tower.
    pub const ALL: [Tower; 2] = [Tower::Text, Tower::Image];

    /// The tower's name: `text` or `image`.
    pub fn name(self) -> &'static str {
        match self {
            Tower::Text => "text",
            Tower::Image => "image",
        }
    }
}

/// A task a job can run, as a job file names it (`tasks = ["semantic", "entities"]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "&'static str")]
pub enum Task {
    /// `semantic`: caption and image embeddings (every job computes them).
    Semantic,
    /// `entities`: the named entities of each caption, from the bundle's NER branch.
    Entities,
    /// `spotting`: the words written in each image, from the bundle's detector and recognizer.
    Spotting,
}

impl Task {
    /// Every task, in the order messages list them.
    pub const ALL: [Task; 3] = [Task::Semantic, Task::Entities, Task::Spotting];

    /// The task's name: `semantic`, `entities` or `spotting`.
    pub fn name(self) -> &'static str {
        match self {
            Task::Semantic => "semantic",
            Task::Entities => "entities",
            Task::Spotting => "spotting",
        }
    }
}

/// Implements, for an enum with `ALL` (every variant) and `name(self) -> &'static str`:
/// `FromStr` by name (an [`UnknownName`] listing the names on error), `Display` as the name,
/// and the conversions serde goes through with `#[serde(try_from = "String", into =
/// "&'static str")]`. `$kind` names the set in messages (`"task"`).
#[macro_export]
macro_rules! impl_by_name {
    ($type:ident, $kind:literal) => {
        impl ::std::str::FromStr for $type {
            type Err = $crate::UnknownName;

            fn from_str(text: &str) -> ::std::result::Result<Self, $crate::UnknownName> {
                $crate::UnknownName::parse($kind, &$type::ALL, $type::name, text)
            }
        }

        impl ::std::convert::TryFrom<::std::string::String> for $type {
            type Error = $crate::UnknownName;

            fn try_from(
                text: ::std::string::String,
            ) -> ::std::result::Result<Self, $crate::UnknownName> {
                text.parse()
            }
        }

        impl ::std::convert::From<$type> for &'static str {
            fn from(value: $type) -> Self {
                value.name()
            }
        }

        impl ::std::fmt::Display for $type {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.pad(self.name())
            }
        }
    };
}

impl_by_name!(Tower, "tower");
impl_by_name!(Task, "task");

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    /// Every variant goes through serde (JSON) and `FromStr` as its name and back.
    fn round_trips<T>(all: &[T], name: fn(T) -> &'static str)
    where
        T: Copy + PartialEq + fmt::Debug + fmt::Display + FromStr + Serialize,
        T: for<'de> Deserialize<'de>,
    {
        for &value in all {
            let text = name(value);
            assert_eq!(value.to_string(), text);
            assert!(text.parse::<T>().is_ok_and(|v| v == value), "{text}");
            let json = serde_json::to_string(&value).expect("serialise");
            assert_eq!(json, format!("\"{text}\""));
            assert_eq!(serde_json::from_str::<T>(&json).expect("parse"), value);
        }
    }

    #[test]
    fn towers_and_tasks_round_trip_by_name() {
        round_trips(&Tower::ALL, Tower::name);
        round_trips(&Task::ALL, Task::name);
        assert_eq!(Tower::Text.name(), "text");
        assert_eq!(Tower::Image.name(), "image");
        assert_eq!(Task::Spotting.name(), "spotting");
        // Display pads like a string does.
        assert_eq!(format!("[{:<9}]", Task::Semantic), "[semantic ]");
    }

    #[test]
    fn an_unknown_name_lists_the_known_ones() {
        let err = "ocr".parse::<Task>().expect_err("unknown task");
        assert_eq!(
            err.to_string(),
            "task `ocr` is not available; tasks are semantic, entities, spotting"
        );
        let err = serde_json::from_str::<Tower>("\"audio\"").expect_err("unknown tower");
        assert!(
            err.to_string()
                .contains("tower `audio` is not available; towers are text, image"),
            "{err}"
        );
        // Names are exact: no case folding, no trimming.
        assert!("Text".parse::<Tower>().is_err());
        assert!(" semantic".parse::<Task>().is_err());
    }
}
