//! `cloudcafe dlq`: inspect or replay the payment requests that failed three times (the dead-letter
//! queue). Needs a build with `--features cloud`.

use clap::{Args, Subcommand};

use super::cloud::DeadLetterQueue;

/// The subcommands of `cloudcafe dlq`.
#[derive(Subcommand)]
pub enum DlqCommand {
    /// Print the messages of the dead-letter queue (they stay in it).
    List {
        #[command(flatten)]
        queues: QueueArgs,
        /// The most messages to show.
        #[arg(long, default_value_t = 100)]
        max: usize,
    },
    /// Send the dead-letter queue's messages back to the payment queue, to be processed again.
    Redrive {
        #[command(flatten)]
        queues: QueueArgs,
        /// The most messages to move.
        #[arg(long, default_value_t = 1000)]
        max: usize,
    },
}

/// The payment queue, its dead-letter queue, and where SQS is.
#[derive(Args, Clone)]
pub struct QueueArgs {
    /// The payment-request queue.
    #[arg(long, env = "CLOUDCAFE_PAYMENT_QUEUE", default_value = "payment-requests.fifo")]
    pub payment_queue: String,
    /// Its dead-letter queue.
    #[arg(long, default_value = "payment-requests-dlq.fifo")]
    pub payment_dlq: String,
    /// An SQS endpoint to use instead of AWS (an emulator; static test credentials).
    #[arg(long, env = "CLOUDCAFE_SQS_ENDPOINT")]
    pub sqs_endpoint: Option<String>,
}

/// Lists or redrives the dead letters.
pub async fn run(command: DlqCommand) -> anyhow::Result<()> {
    let queues = match &command {
        DlqCommand::List { queues, .. } | DlqCommand::Redrive { queues, .. } => queues,
    };
    let dlq = DeadLetterQueue::open(queues).await?;
    match command {
        DlqCommand::List { max, queues } => {
            let letters = dlq.list(max).await?;
            println!("{} message(s) in {}", letters.len(), queues.payment_dlq);
            for l in letters {
                match &l.request {
                    Some(r) => println!(
                        "{}  receives={}  order={} customer={} amount_cents={} event={}",
                        l.message_id, l.receives, r.order_id, r.customer_id, r.amount_cents, r.event_id
                    ),
                    None => println!("{}  receives={}  not a payment request: {}", l.message_id, l.receives, l.body),
                }
            }
        }
        DlqCommand::Redrive { max, queues } => {
            let moved = dlq.redrive(&queues.payment_queue, max).await?;
            println!("moved {moved} message(s) from {} back to {}", queues.payment_dlq, queues.payment_queue);
        }
    }
    Ok(())
}
