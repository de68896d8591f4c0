//! What every black-box test file of the binary shares (`mod common;` in each).

/// The backends compiled into the binary under test; the run-time tests run once per backend.
pub(crate) fn backends() -> Vec<&'static str> {
    [
        cfg!(feature = "polling").then_some("polling"),
        cfg!(feature = "select").then_some("select"),
    ]
    .into_iter()
    .flatten()
    .collect()
}
