//! Taking work from an SQS queue (feature `cloud`), as the payment processor and the notification
//! worker both do: long-polled receives, a message kept invisible while it is handled, and deleted
//! only once handled.

use std::time::Duration;

use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
use events::metric::Metric;
use projections::aws::{classify, AwsFailure};

/// A failed call to a queue, read by [`classify`] (`what` names the queue).
pub fn queue_failure<E, R>(what: &str, e: aws_sdk_sqs::error::SdkError<E, R>) -> AwsFailure
where
    E: aws_sdk_sqs::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    classify(what, e)
}

/// One queue and how its messages are taken.
#[derive(Clone, Debug)]
pub struct Receiving {
    pub queue_url: String,
    /// Long-poll wait per receive (at most 20 s).
    pub wait: Duration,
    /// Visibility timeout of a received message, extended while it is handled.
    pub visibility: Duration,
}

impl Receiving {
    /// Up to 10 messages, with their system attributes (group, receive count).
    pub async fn receive(&self, sqs: &aws_sdk_sqs::Client) -> Result<Vec<Message>, AwsFailure> {
        let out = sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(self.wait.as_secs().min(20) as i32)
            .visibility_timeout(self.visibility.as_secs().max(1) as i32)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .map_err(|e| queue_failure(&self.queue_url, e))?;
        Ok(out.messages.unwrap_or_default())
    }

    /// Extends the message's visibility every third of the timeout until the answer is dropped
    /// (also when the handling is cut short: a worker whose task is aborted must not keep its
    /// messages hidden); each extension counts in `extensions`.
    pub fn keep_invisible(
        &self,
        sqs: &aws_sdk_sqs::Client,
        receipt: String,
        extensions: &'static Metric,
    ) -> KeptInvisible {
        let (sqs, queue, visibility) = (sqs.clone(), self.queue_url.clone(), self.visibility);
        KeptInvisible(tokio::spawn(async move {
            loop {
                tokio::time::sleep(visibility / 3).await;
                let extended = sqs
                    .change_message_visibility()
                    .queue_url(&queue)
                    .receipt_handle(&receipt)
                    .visibility_timeout(visibility.as_secs().max(1) as i32)
                    .send()
                    .await;
                match extended {
                    Ok(_) => extensions.counter(events::metric::NO_LABELS).increment(1),
                    Err(e) => {
                        tracing::warn!(error = %events::ErrorChain(&queue_failure(&queue, e)), "visibility not extended")
                    }
                }
            }
        }))
    }

    /// Deletes a handled message. A failure only logs: the message comes back and is handled
    /// again, which the handlers make harmless.
    pub async fn delete(&self, sqs: &aws_sdk_sqs::Client, receipt: &str) {
        if let Err(e) = sqs.delete_message().queue_url(&self.queue_url).receipt_handle(receipt).send().await {
            tracing::warn!(error = %events::ErrorChain(&queue_failure(&self.queue_url, e)), "handled message not deleted");
        }
    }
}

/// A message kept invisible while this lives.
pub struct KeptInvisible(tokio::task::JoinHandle<()>);

impl Drop for KeptInvisible {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How many times SQS has handed out the message (this receive included).
pub fn receive_count(message: &Message) -> u32 {
    message
        .attributes()
        .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}
