//! How a run reports its progress: a bar on a terminal, plain lines otherwise, and in a search
//! the trial's recorder.

use super::record::EpochMetrics;

/// Progress reports of a run.
pub trait Progress {
    fn epoch_start(&mut self, epoch: usize, epochs: usize, batches: usize);
    fn batch(&mut self, loss: f64);
    /// Called after an epoch is checkpointed; returning `false` stops the run there (it stays
    /// resumable), as an interrupt would.
    fn epoch_end(&mut self, m: &EpochMetrics) -> bool;
}

/// Prints one line per epoch on standard error (results go to standard output).
pub struct Lines;

impl Progress for Lines {
    fn epoch_start(&mut self, _: usize, _: usize, _: usize) {}
    fn batch(&mut self, _: f64) {}
    fn epoch_end(&mut self, m: &EpochMetrics) -> bool {
        eprintln!("{}", epoch_line(m));
        true
    }
}

/// The plain-text line of an epoch.
pub fn epoch_line(m: &EpochMetrics) -> String {
    let split = |name: &str, loss: Option<f64>, acc: Option<f64>| match (loss, acc) {
        (Some(l), Some(a)) => format!("  {name} {l:.3}/{:.2}%", 100.0 * a),
        _ => String::new(),
    };
    format!(
        "epoch {:>3}  lr {:.4}  train {:.3}/{:.2}%{}{}  {:.0} img/s  {:.1} s",
        m.epoch + 1,
        m.lr,
        m.train_loss,
        100.0 * m.train_acc,
        split("val", m.val_loss, m.val_acc),
        split("test", m.test_loss, m.test_acc),
        m.images_per_sec,
        m.epoch_seconds
    )
}
