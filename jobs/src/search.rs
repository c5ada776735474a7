//! `vemo search`: k-nearest images (or captions) to a sentence or an image, from an index
//! written by `vemo index`; `vemo embed`: the query vector it would search with.
//!
//! The query is encoded with the bundle named in the index's rows, at the exit that wrote the
//! searched column: a caption column `text_emb_eN` with text exit N, an image column
//! `image_emb_eN` with the text tower's last exit (the joint space every exit maps into) for a
//! sentence, or with image exit N for an image; `image_feat_e7` with the pooled feature.
//! `--entity` alone lists the items that name an entity; with a sentence or an image it
//! restricts the similarity search to them. `--chars` ranks images by the words spotted in
//! them.

use std::process::ExitCode;

use vemo_models::bundle::Bundle;
use vemo_models::models::bert::default_device;
use vemo_models::models::image_encoder::ImageEncoder;
use vemo_models::models::text_encoder::TextEncoder;
use vemo_models::pixels::classifier_crop;
use vemo_operators::char_search::{CharHit, find_chars};
use vemo_operators::images::{ImageReader, decode_image};
use vemo_operators::lance_io::open_if_exists;
use vemo_operators::store;
use vemo_operators::vector_search::{
    Hit, embedding_columns, find_entity, match_entity, nearest, recorded_bundle,
};
use vemo_schemas::{EmbeddingColumn, ITEMS_DATASET, Tower};

use crate::cli::{EmbedArgs, SearchArgs};
use crate::home::{bundle_dir, expand};
use crate::usage;

/// What the query is.
enum Query<'a> {
    Text(&'a str),
    Image(&'a str),
}

/// The `items` dataset under the output root `index`.
fn open_items(runtime: &tokio::runtime::Runtime, index: &str) -> anyhow::Result<lance::Dataset> {
    let root = store::resolve(&expand(index)).map_err(|e| usage(e.to_string()))?;
    let items_uri = store::join(&root.uri, ITEMS_DATASET);
    runtime
        .block_on(open_if_exists(&items_uri))?
        .ok_or_else(|| {
            usage(format!(
                "no {ITEMS_DATASET} under {} (run `vemo index`)",
                root.uri
            ))
        })
}

/// The column `query` searches (`exit`, `captions` as `vemo search` takes them), the bundle
/// that encodes it (`bundle`, else the one named in the index's rows) and the query's vector:
/// `vemo search` and `vemo embed` both go through here, so they never disagree.
fn query_vector(
    runtime: &tokio::runtime::Runtime,
    dataset: &lance::Dataset,
    query: &Query,
    exit: Option<usize>,
    captions: bool,
    bundle: Option<&str>,
) -> anyhow::Result<(EmbeddingColumn, Bundle, Vec<f32>)> {
    let column = pick_column(&embedding_columns(dataset), query, exit, captions)?;
    let bundle = open_bundle(runtime, dataset, bundle)?;
    let vector = encode_query(runtime, &bundle, query, &column)?;
    Ok((column, bundle, vector))
}

/// Runs `vemo embed`: the query vector `vemo search` would compute, and its column.
pub fn embed(args: EmbedArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new()?;
    let dataset = open_items(&runtime, &args.index)?;
    let query = match (&args.text, &args.image) {
        (Some(text), _) => Query::Text(text),
        (None, Some(image)) => Query::Image(image),
        (None, None) => return Err(usage("give --text or --image")),
    };
    let (column, bundle, vector) = query_vector(
        &runtime,
        &dataset,
        &query,
        args.exit,
        args.captions,
        args.bundle.as_deref(),
    )?;
    if args.json {
        let out = serde_json::json!({
            "column": column.name(),
            "bundle": bundle.id(),
            "vector": vector,
        });
        println!("{out}");
    } else {
        println!("{}", column.name());
        let numbers: Vec<String> = vector.iter().map(f32::to_string).collect();
        println!("{}", numbers.join(" "));
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `vemo search`.
pub fn run(args: SearchArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new()?;
    let dataset = open_items(&runtime, &args.index)?;
    if let Some(chars) = &args.chars {
        let hits = runtime
            .block_on(find_chars(&dataset, chars, args.k))
            .map_err(|e| usage(e.to_string()))?;
        print_char_hits(args.json, &hits)?;
        return Ok(ExitCode::SUCCESS);
    }
    let query = match (&args.text, &args.image) {
        (Some(text), _) => Some(Query::Text(text)),
        (None, Some(image)) => Some(Query::Image(image)),
        (None, None) => None,
    };
    let label = args.entity_type.as_deref().map(str::to_uppercase);
    if let Some(bad) = label
        .as_deref()
        .filter(|l| !["PER", "ORG", "LOC", "MISC"].contains(l))
    {
        return Err(usage(format!(
            "--entity-type {bad}: use PER, ORG, LOC or MISC"
        )));
    }
    let Some(query) = query else {
        let entity = args
            .entity
            .as_deref()
            .ok_or_else(|| usage("give --text, --image, --entity or --chars"))?;
        let hits = runtime
            .block_on(find_entity(&dataset, entity, label.as_deref(), args.k))
            .map_err(|e| usage(e.to_string()))?;
        print_hits(args.json, "entities", &hits)?;
        return Ok(ExitCode::SUCCESS);
    };
    // With --entity, the similarity search runs over the matching items only.
    let filter = match &args.entity {
        Some(entity) => match runtime
            .block_on(match_entity(&dataset, entity, label.as_deref()))
            .map_err(|e| usage(e.to_string()))?
        {
            Some(found) => Some(found.filter),
            None => {
                print_hits(args.json, "entities", &[])?;
                return Ok(ExitCode::SUCCESS);
            }
        },
        None => None,
    };
    let (column, _, vector) = query_vector(
        &runtime,
        &dataset,
        &query,
        args.exit,
        args.captions,
        args.bundle.as_deref(),
    )?;
    let hits = runtime.block_on(nearest(
        &dataset,
        &column.name(),
        &vector,
        args.k,
        filter.as_deref(),
    ))?;
    print_hits(args.json, &column.name(), &hits)?;
    Ok(ExitCode::SUCCESS)
}

fn print_hits(json: bool, column: &str, hits: &[Hit]) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(hits)?);
    } else {
        print_table(column, hits);
    }
    Ok(())
}

/// The column a query searches: see the module header.
fn pick_column(
    columns: &[EmbeddingColumn],
    query: &Query,
    exit: Option<usize>,
    captions: bool,
) -> anyhow::Result<EmbeddingColumn> {
    let available = || {
        columns
            .iter()
            .map(EmbeddingColumn::name)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let deepest = |tower: Tower, feature: bool| {
        columns
            .iter()
            .filter(|c| c.tower == tower && c.feature == feature)
            .filter(|c| exit.is_none_or(|e| c.exit == e))
            .max_by_key(|c| c.exit)
            .cloned()
    };
    let picked = match (query, captions) {
        (_, true) => deepest(Tower::Text, false),
        (Query::Text(_), false) => deepest(Tower::Image, false),
        (Query::Image(_), false) if exit.is_none() => {
            deepest(Tower::Image, true).or_else(|| deepest(Tower::Image, false))
        }
        (Query::Image(_), false) => deepest(Tower::Image, false),
    };
    picked.ok_or_else(|| {
        let exit = exit.map(|e| format!(" at exit {e}")).unwrap_or_default();
        let kind = if captions { "caption" } else { "image" };
        usage(format!(
            "the index has no {kind} embedding column{exit}; it has: {}",
            available()
        ))
    })
}

/// The bundle that wrote the index (from its `bundle` column), or the one given.
fn open_bundle(
    runtime: &tokio::runtime::Runtime,
    dataset: &lance::Dataset,
    given: Option<&str>,
) -> anyhow::Result<Bundle> {
    if let Some(name) = given {
        return Ok(Bundle::open(&bundle_dir(&expand(name)))?);
    }
    let recorded = runtime
        .block_on(recorded_bundle(dataset))?
        .ok_or_else(|| usage("the index has no rows to search"))?;
    let name = recorded.split('@').next().unwrap_or(&recorded);
    let bundle = Bundle::open(&bundle_dir(name))?;
    if bundle.id() != recorded {
        tracing::warn!(
            recorded = %recorded,
            found = %bundle.id(),
            "The index was written by another version of the bundle; pass --bundle to choose."
        );
    }
    Ok(bundle)
}

/// Encodes the query into the searched column's space.
fn encode_query(
    runtime: &tokio::runtime::Runtime,
    bundle: &Bundle,
    query: &Query,
    column: &EmbeddingColumn,
) -> anyhow::Result<Vec<f32>> {
    let device = default_device();
    let first =
        |rows: Vec<Vec<Vec<f32>>>| rows.into_iter().next().and_then(|r| r.into_iter().next());
    let vector = match query {
        Query::Text(text) => {
            let exit = match column.tower {
                Tower::Text => column.exit,
                Tower::Image => bundle.text()?.default_exit,
            };
            first(TextEncoder::load(bundle, &[exit], &device)?.encode(&[text])?)
        }
        Query::Image(path) => {
            let uri = store::normalize_uri(&expand(path)).map_err(|e| usage(e.to_string()))?;
            let bytes = runtime
                .block_on(ImageReader::default().fetch(&uri))
                .map_err(|reason| usage(format!("cannot read the query image {uri}: {reason}")))?;
            let (_, image) = decode_image(&bytes)
                .map_err(|reason| usage(format!("the query image {uri}: {reason}")))?;
            let exit = match column.tower {
                Tower::Image => column.exit,
                Tower::Text => bundle.image()?.default_exit,
            };
            let encoder = ImageEncoder::load(bundle, &[exit], &device)?;
            let (resize, side) = encoder.input_geometry();
            let crop = classifier_crop(&image, resize, side);
            let encoded = encoder.encode(&[&crop])?;
            if column.feature {
                encoded.features.and_then(|f| f.into_iter().next())
            } else {
                first(encoded.joint)
            }
        }
    };
    vector.ok_or_else(|| anyhow::anyhow!("the encoder returned no embedding for the query"))
}

fn print_char_hits(json: bool, hits: &[CharHit]) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(hits)?);
        return Ok(());
    }
    println!(
        "{:>4} {:>7} {:>5}  {:<24} matched words",
        "rank", "score", "exact", "id"
    );
    for (rank, hit) in hits.iter().enumerate() {
        let words: Vec<String> = hit
            .words
            .iter()
            .map(|w| {
                let p = &w.polygon;
                let corner = |i: usize| p.get(i).copied().unwrap_or_default();
                format!("{:?} at ({:.0},{:.0})", w.text, corner(0), corner(1))
            })
            .collect();
        println!(
            "{:>4} {:>7.4} {:>5}  {:<24} {}",
            rank + 1,
            hit.score,
            hit.exact,
            hit.id,
            words.join(", ")
        );
    }
    Ok(())
}

fn print_table(column: &str, hits: &[Hit]) {
    println!("column {column}");
    println!(
        "{:>4} {:>7}  {:<24} {:<60} caption",
        "rank", "score", "id", "image"
    );
    for (rank, hit) in hits.iter().enumerate() {
        let caption: String = hit
            .caption
            .as_deref()
            .unwrap_or("")
            .chars()
            .take(60)
            .collect();
        println!(
            "{:>4} {:>7.4}  {:<24} {:<60} {caption}",
            rank + 1,
            hit.score,
            hit.id,
            hit.image
        );
    }
}
