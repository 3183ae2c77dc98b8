//! The AWS plans of the experiments (being written).
