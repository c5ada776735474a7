//! Readers of ICDAR 2015 style ground truth: scene files `gt_img_N.txt` (a 4-point box and
//! the transcription per line, `###` for don't care) and the word-crop list `gt.txt`
//! (`word_1.png, "Genaxis Theatre"`).

use std::path::{Path, PathBuf};

use super::geometry::Point;
use crate::{Error, Result};

/// A ground-truth word of a scene.
#[derive(Debug, Clone, PartialEq)]
pub struct GtWord {
    pub polygon: Vec<Point>,
    pub text: String,
    /// `###`: neither a hit nor a miss.
    pub dont_care: bool,
}

fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::Io {
        path: path.display().to_string(),
        cause: e,
    })?;
    let text = String::from_utf8_lossy(&bytes);
    Ok(text.trim_start_matches('\u{feff}').to_string())
}

fn bad(path: &Path, line: usize, reason: &str) -> Error {
    Error::Bundle {
        path: format!("{}:{}", path.display(), line + 1),
        reason: reason.to_string(),
    }
}

/// The words of one scene's ground-truth file.
pub fn read_scene_gt(path: &Path) -> Result<Vec<GtWord>> {
    let text = read_text(path)?;
    let mut words = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.splitn(9, ',').collect();
        if fields.len() < 9 {
            return Err(bad(path, number, "expected x1,y1,...,x4,y4,transcription"));
        }
        let coords: Vec<f32> = fields[..8]
            .iter()
            .map(|v| v.trim().parse::<f32>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| bad(path, number, "a coordinate is not a number"))?;
        let text = fields[8].to_string();
        words.push(GtWord {
            polygon: coords.chunks(2).map(|p| [p[0], p[1]]).collect(),
            dont_care: text == "###",
            text,
        });
    }
    Ok(words)
}

/// The crops of a `gt.txt` in `dir`: each image's path and its transcription.
pub fn read_crops_gt(dir: &Path) -> Result<Vec<(PathBuf, String)>> {
    let path = dir.join("gt.txt");
    let text = read_text(&path)?;
    let mut crops = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let (file, quoted) = line
            .split_once(", ")
            .ok_or_else(|| bad(&path, number, "expected `file, \"text\"`"))?;
        let inner = quoted
            .trim()
            .strip_prefix('"')
            .and_then(|q| q.strip_suffix('"'))
            .ok_or_else(|| bad(&path, number, "the transcription is not quoted"))?;
        crops.push((dir.join(file.trim()), unescape(inner)));
    }
    Ok(crops)
}

/// Undoes the backslash escapes of a quoted transcription (`\"`, `\\`).
fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match (c, chars.clone().next()) {
            ('\\', Some(next @ ('"' | '\\'))) => {
                out.push(next);
                chars.next();
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scene_lines_keep_commas_in_text_and_mark_dont_care() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::Io {
            path: "tempdir".into(),
            cause: e,
        })?;
        let path = dir.path().join("gt_img_1.txt");
        let content = "\u{feff}377,117,463,117,465,130,378,130,Genaxis Theatre\r\n\
                       1,2,3,2,3,4,1,4,###\r\n5,5,9,5,9,9,5,9,a,b\r\n";
        std::fs::write(&path, content).map_err(|e| Error::Io {
            path: path.display().to_string(),
            cause: e,
        })?;
        let words = read_scene_gt(&path)?;
        assert_eq!(words.len(), 3);
        assert_eq!(words[0].text, "Genaxis Theatre");
        assert_eq!(words[0].polygon[0], [377.0, 117.0]);
        assert!(words[1].dont_care && !words[0].dont_care);
        assert_eq!(words[2].text, "a,b");
        Ok(())
    }

    #[test]
    fn crop_transcriptions_are_unquoted() {
        assert_eq!(unescape(r#"say \"hi\" \\ ok"#), r#"say "hi" \ ok"#);
        assert_eq!(unescape(r"C:\x"), r"C:\x");
    }
}
