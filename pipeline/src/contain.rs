//! Containing a panic to the item that caused it: a batched model pass that panics is run
//! again one item at a time, so that one poisonous item costs its own `errors` row instead of
//! the process. An allocation failure aborts the process and cannot be caught: the limits of
//! `vemo_operators::limits` are checked before anything an item causes is allocated.

use std::panic::{AssertUnwindSafe, catch_unwind};

/// What a contained model pass over some inputs gave.
#[derive(Debug)]
pub enum Contained<R> {
    /// The pass over all the inputs at once.
    Batch(R),
    /// The pass panicked: then a pass per input, or the reason that input panicked alone.
    Each(Vec<Result<R, String>>),
}

/// `batch` over `inputs`. `Err` of the whole call: `batch` failed without panicking (a failure
/// of the stage itself, not of an item: a device error, say). If `batch` panics, each input
/// runs alone: an input that panics alone gets its reason; one that fails alone without a
/// panic is again a failure of the stage.
pub fn contained<T, R, E: std::fmt::Display>(
    inputs: &[T],
    batch: impl Fn(&[T]) -> Result<R, E>,
) -> Result<Contained<R>, E> {
    match catch_unwind(AssertUnwindSafe(|| batch(inputs))) {
        Ok(Ok(output)) => return Ok(Contained::Batch(output)),
        Ok(Err(e)) => return Err(e),
        Err(panic) => tracing::warn!(
            items = inputs.len(),
            reason = panic_message(&*panic),
            "A batch panicked: running its items one at a time."
        ),
    }
    let mut out = Vec::with_capacity(inputs.len());
    for input in inputs {
        out.push(
            match catch_unwind(AssertUnwindSafe(|| batch(std::slice::from_ref(input)))) {
                Ok(Ok(one)) => Ok(one),
                Ok(Err(e)) => return Err(e),
                Err(panic) => Err(format!("the model panicked: {}", panic_message(&*panic))),
            },
        );
    }
    Ok(Contained::Each(out))
}

/// [`contained`] for a `batch` that returns one output per input: the result of each input.
pub fn per_item<T, R, E: std::fmt::Display>(
    inputs: &[T],
    batch: impl Fn(&[T]) -> Result<Vec<R>, E>,
) -> Result<Vec<Result<R, String>>, E> {
    Ok(match contained(inputs, batch)? {
        Contained::Batch(outputs) => outputs.into_iter().map(Ok).collect(),
        Contained::Each(each) => each
            .into_iter()
            .map(|one| match one {
                Ok(mut one) if one.len() == 1 => Ok(one.remove(0)),
                Ok(_) => Err("the model returned no output for this item".to_string()),
                Err(reason) => Err(reason),
            })
            .collect(),
    })
}

/// Runs `f`, turning a panic into its message.
pub fn unpanicked<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|p| format!("panicked: {}", panic_message(&*p)))
}

/// The text a panic carried.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_item_fails_alone() {
        let square = |xs: &[i32]| -> Result<Vec<i32>, String> {
            assert!(!xs.contains(&13), "unlucky input");
            Ok(xs.iter().map(|x| x * x).collect())
        };
        let got = per_item(&[1, 13, 3], square).expect("no stage failure");
        assert_eq!(got[0], Ok(1));
        assert!(
            got[1]
                .as_ref()
                .expect_err("13 panics")
                .contains("unlucky input")
        );
        assert_eq!(got[2], Ok(9));
        let failing = |_: &[i32]| -> Result<Vec<i32>, String> { Err("no device".into()) };
        assert_eq!(per_item(&[1], failing).expect_err("stage"), "no device");
        // After a panic, an item that fails alone without one fails the stage, not the item.
        let mixed = |xs: &[i32]| -> Result<Vec<i32>, String> {
            assert!(xs.len() == 1, "batches panic");
            match xs[0] {
                2 => Err("device lost".into()),
                x => Ok(vec![x]),
            }
        };
        assert_eq!(per_item(&[1, 2], mixed).expect_err("stage"), "device lost");
        assert!(
            unpanicked(|| panic!("boom"))
                .expect_err("panic")
                .contains("boom")
        );
    }
}
