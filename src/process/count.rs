//! The default processor, `count`.

use super::{ClientId, FrameView, Output, Processor};
use anyhow::Result;
use std::collections::HashMap;

/// The default processor: counts the frames it is given, per client, and
/// sends the count back. It needs no pixels, so nothing is ever decoded.
#[derive(Default)]
pub struct CountProcessor {
    per_client: HashMap<ClientId, u64>,
}

impl Processor for CountProcessor {
    fn name(&self) -> &str {
        "count"
    }

    fn process(&mut self, view: &mut FrameView) -> Result<Output> {
        let n = self.per_client.entry(view.frame.client).or_default();
        *n += 1;
        Ok(Output::json(&serde_json::json!({ "count": *n })))
    }

    fn client_left(&mut self, client: ClientId) {
        self.per_client.remove(&client);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::frame::tests::arrived;

    #[test]
    fn count_processor_counts_per_client_without_decoding() {
        let mut p = CountProcessor::default();
        let mut v = FrameView::new(arrived(crate::media::jpeg::tests::sample_jpeg(16, 8)));
        assert_eq!(
            p.process(&mut v).unwrap(),
            Output::Json(r#"{"count":1}"#.into())
        );
        assert_eq!(
            p.process(&mut v).unwrap(),
            Output::Json(r#"{"count":2}"#.into())
        );
        assert!(!v.was_decoded());
        p.client_left(v.frame.client);
        assert_eq!(
            p.process(&mut v).unwrap(),
            Output::Json(r#"{"count":1}"#.into())
        );
    }
}
