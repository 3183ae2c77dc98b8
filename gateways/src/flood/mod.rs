//! Floods: the stress scenarios, driven into the actors in process or into running nodes over HTTP,
//! measured in an open model and ending with the `verify` step.
