//! Integration tests: the HTTP contract, the full stack through a fake OpenAI-compatible
//! model, retrieval and the gate over the sample lessons, and the `tutor` binary.

mod api;
mod architecture;
mod cli;
mod compat;
mod conversation;
mod faults;
mod helpers;
mod injection;
mod languages;
mod log;
mod lti;
mod metrics;
mod model;
mod openapi;
mod quiz;
mod reload;
mod replicas;
mod report;
mod retrieval;
mod robust;
mod semantic;
mod slow_clients;
mod tls;
mod unicode;
mod verify;
