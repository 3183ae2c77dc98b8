//! The DocumentDB client's CA file: what it puts in the driver's options, and that it is used on
//! the wire (a client told to speak TLS to the plain MongoDB-wire emulator cannot reach it).

use std::path::Path;

use events::error_chain;
use mongodb::bson::doc;
use projections::read_models::documents::{documentdb_options, open_documentdb};
use testkit::servers;
use testkit::tls::TestCa;

#[tokio::test]
async fn a_ca_file_turns_tls_on_with_that_ca() {
    let options =
        documentdb_options("mongodb://cafe:pw@docdb.example.com:27017/?replicaSet=rs0", Some(Path::new("/ca.pem")))
            .await
            .unwrap();
    match options.tls {
        Some(mongodb::options::Tls::Enabled(tls)) => {
            assert_eq!(tls.ca_file_path.as_deref(), Some(Path::new("/ca.pem")))
        }
        other => panic!("TLS is not on: {other:?}"),
    }
    let options = documentdb_options("mongodb://docdb.example.com:27017/", None).await.unwrap();
    assert!(options.tls.is_none(), "without a CA file the URL decides");
}

#[tokio::test]
async fn a_bad_url_is_told_without_its_password() {
    let e = documentdb_options("mongodb://cafe:hunter2@docdb:27017/?notAnOption=x&tls=maybe", None).await.unwrap_err();
    let text = error_chain(&e);
    assert!(text.contains("cafe:***@docdb") && !text.contains("hunter2"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ca_file_reaches_the_wire() {
    let Some(uri) = servers::mongodb_uri() else { return };
    let Some(ca) = TestCa::generate() else { return };
    let quick = format!("{uri}{}serverSelectionTimeoutMS=1500", if uri.contains('?') { "&" } else { "/?" });
    let plain = open_documentdb(&quick, None).await.unwrap();
    plain.database("admin").run_command(doc! { "ping": 1 }).await.unwrap();
    // The same server with a CA file: the client insists on TLS, which the emulator does not speak.
    let tls = open_documentdb(&quick, Some(&ca.ca_file)).await.unwrap();
    assert!(tls.database("admin").run_command(doc! { "ping": 1 }).await.is_err(), "a plain server passed for TLS");
}

/// A password from a file or the environment goes to the URL's user, and wins over the URL's own.
#[tokio::test]
async fn a_password_given_apart_goes_to_the_urls_user() {
    use projections::read_models::documents::with_password;
    let secret = events::secret::Password::new("from-secrets-manager");
    let mut options = documentdb_options("mongodb://cafe:old@docdb.example.com:27017/", None).await.unwrap();
    with_password(&mut options, &secret).unwrap();
    let credential = options.credential.as_ref().unwrap();
    assert_eq!(
        (credential.username.as_deref(), credential.password.as_deref()),
        (Some("cafe"), Some("from-secrets-manager"))
    );
    let mut anonymous = documentdb_options("mongodb://docdb.example.com:27017/", None).await.unwrap();
    let refused = with_password(&mut anonymous, &secret).unwrap_err();
    assert!(refused.contains("needs a user") && !refused.contains("from-secrets-manager"), "{refused}");
}
