//! Several providers behind one [`ChatModel`]: a fallback order (when one fails or times out
//! before its first word, the next is tried; the extractive answerer is the last resort, so a
//! learner still gets a grounded, cited answer), and an optional routing rule that sends easy
//! questions (short, answered by one passage) to one provider first and the rest to another.
//! `backend` in the answer says which one answered.

use super::extractive::Extractive;
use super::{ChatModel, ModelError, ModelRequest, Reply, ReplyStream};
use futures::future::BoxFuture;
use std::sync::Arc;

/// A named provider of the chain.
pub struct Provider {
    /// The name used in the configuration and the logs.
    pub name: String,
    pub model: Arc<dyn ChatModel>,
}

/// Providers tried in order, with optional routing and the extractive last resort.
pub struct Chain {
    providers: Vec<Provider>,
    /// Index of the provider easy questions go to first.
    easy: Option<usize>,
    /// Index of the provider other questions go to first.
    hard: Option<usize>,
    last_resort: Option<Extractive>,
}

impl Chain {
    /// A chain over `providers` in fallback order; `easy`/`hard` name the providers that
    /// easy and other questions try first; `extractive_fallback` adds the embedded answerer.
    pub fn new(
        providers: Vec<Provider>,
        easy: Option<&str>,
        hard: Option<&str>,
        extractive_fallback: bool,
    ) -> Result<Chain, String> {
        let find = |name: Option<&str>| -> Result<Option<usize>, String> {
            match name {
                None => Ok(None),
                Some(name) => providers
                    .iter()
                    .position(|p| p.name == name)
                    .map(Some)
                    .ok_or_else(|| {
                        format!("routing names provider `{name}`, which is not in [[providers]]")
                    }),
            }
        };
        Ok(Chain {
            easy: find(easy)?,
            hard: find(hard)?,
            providers,
            last_resort: extractive_fallback.then(Extractive::new),
        })
    }

    /// The order in which providers are tried for a request.
    fn order(&self, easy: bool) -> Vec<usize> {
        let first = if easy { self.easy } else { self.hard };
        let mut order: Vec<usize> = first.into_iter().collect();
        order.extend((0..self.providers.len()).filter(|i| Some(*i) != first));
        order
    }
}

impl ChatModel for Chain {
    fn counts_its_failures(&self) -> bool {
        true
    }

    fn name(&self) -> String {
        self.providers
            .first()
            .map_or_else(|| super::extractive::NAME.to_string(), |p| p.model.name())
    }

    fn complete<'a>(
        &'a self,
        request: &'a ModelRequest,
    ) -> BoxFuture<'a, Result<Reply, ModelError>> {
        Box::pin(self.in_order(
            request,
            |model| model.complete(request),
            "provider failed; trying the next",
        ))
    }

    fn stream<'a>(
        &'a self,
        request: &'a ModelRequest,
    ) -> BoxFuture<'a, Result<ReplyStream, ModelError>> {
        Box::pin(self.in_order(
            request,
            |model| model.stream(request),
            "provider failed before its first word; trying the next",
        ))
    }
}

impl Chain {
    /// Tries `call` on each provider in the request's order, counting and logging each failure,
    /// then on the extractive last resort (if any); the last error when every one failed.
    async fn in_order<'a, T>(
        &'a self,
        request: &'a ModelRequest,
        call: impl Fn(&'a dyn ChatModel) -> BoxFuture<'a, Result<T, ModelError>>,
        failed: &'static str,
    ) -> Result<T, ModelError> {
        let mut last = None;
        for i in self.order(request.easy) {
            let provider = &self.providers[i];
            match call(provider.model.as_ref()).await {
                Ok(reply) => return Ok(reply),
                Err(error) => {
                    crate::telemetry::model_failure(&provider.model.name(), error.outcome());
                    tracing::warn!(provider = %provider.name, %error, "{failed}");
                    last = Some(error);
                }
            }
        }
        match &self.last_resort {
            Some(extractive) => call(extractive).await,
            None => {
                Err(last
                    .unwrap_or_else(|| ModelError::Upstream("no provider configured".to_string())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(easy: Option<&str>, hard: Option<&str>) -> Chain {
        let providers = ["open", "closed", "spare"]
            .into_iter()
            .map(|name| Provider {
                name: name.to_string(),
                model: Arc::new(Extractive::new()),
            })
            .collect();
        Chain::new(providers, easy, hard, true).expect("valid chain")
    }

    #[test]
    fn routing_puts_the_chosen_provider_first_and_keeps_the_rest_in_order() {
        assert_eq!(chain(None, None).order(true), vec![0, 1, 2]);
        let routed = chain(Some("open"), Some("closed"));
        assert_eq!(routed.order(true), vec![0, 1, 2]);
        assert_eq!(routed.order(false), vec![1, 0, 2]);
        assert!(Chain::new(Vec::new(), Some("nope"), None, true).is_err());
    }
}
