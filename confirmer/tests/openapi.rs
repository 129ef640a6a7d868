//! What /openapi.json serves (`api::ApiDoc`) says what a path parameter must look like.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

use utoipa::OpenApi;

#[test]
fn openapi_json_gives_address_and_hash_parameters_their_pattern() {
    let openapi = serde_json::to_value(confirmer::api::ApiDoc::openapi()).unwrap();
    for (path, name, pattern) in
        [("/accounts/{address}", "address", "^0x[0-9a-fA-F]{40}$"), ("/tx/{hash}", "hash", "^0x[0-9a-fA-F]{64}$")]
    {
        let parameters = openapi["paths"][path]["get"]["parameters"].as_array().unwrap();
        let parameter = parameters.iter().find(|p| p["name"] == name).unwrap();
        assert_eq!(parameter["schema"]["pattern"], pattern, "{path}: {parameter}");
    }
}
