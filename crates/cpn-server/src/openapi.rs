//! What the OpenAPI document says about answers that come from the edge rather than from a
//! handler.
//!
//! The extractors answer before any handler runs: `Principal` with 401 for a missing or dead
//! token and 403 for a request its API key's scopes do not allow, `JsonBody` with 400 / 413 / 415 / 422 for a body that is not the declared JSON,
//! path and query extractors with 400 (422 for a query value of the wrong form), and an
//! object named in the path may not exist (404). Declaring those by hand on each endpoint is how they
//! went missing (a fuzzer found 94 undeclared 401s), so [`EdgeResponses`] adds them to every
//! operation whose shape makes them possible, and handlers declare only what they decide.
//!
//! Event streams are declared by handlers with the JSON of one event as their body;
//! [`EdgeResponses`] rewrites that into what travels: SSE messages whose `data` line holds
//! that JSON (`contentMediaType` and `contentSchema`, as OpenAPI 3.1 validators read them).

use utoipa::openapi::extensions::Extensions;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::{OpenApi, Ref, RefOr, Response, ResponseBuilder};

const EVENT_STREAM: &str = "text/event-stream";

/// Adds the extractors' answers to every operation that can get them.
pub(crate) struct EdgeResponses;

impl utoipa::Modify for EdgeResponses {
    fn modify(&self, openapi: &mut OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for op in operations.into_iter().flatten() {
                add_edge_responses(op);
                describe_event_streams(op);
            }
        }
    }
}

fn add_edge_responses(op: &mut Operation) {
    let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
    let has_body = op.request_body.is_some();
    let params = op.parameters.as_deref().unwrap_or_default();
    let has_path = params
        .iter()
        .any(|p| matches!(p.parameter_in, ParameterIn::Path));
    let has_query_or_header = params
        .iter()
        .any(|p| matches!(p.parameter_in, ParameterIn::Query | ParameterIn::Header));
    let mut add = |status: &str, description: &str| {
        op.responses
            .responses
            .entry(status.to_string())
            .or_insert_with(|| error_response(description));
    };
    if secured {
        add(
            "401",
            "No token, or one that is unknown, expired or revoked",
        );
        // The extractor refuses a request an API key's scopes do not allow (a read-only
        // key writing, say), and a node credential another node's path, before any handler.
        add(
            "403",
            "The token's scopes, the caller's role or its ownership do not allow this",
        );
    }
    if has_body {
        add("400", "The body is not JSON");
        add("413", "The body is larger than the limit");
        add("415", "The body is not `application/json`");
        add(
            "422",
            "The body does not have the declared shape; `field` names where",
        );
    }
    if has_path || has_query_or_header {
        add(
            "400",
            "A path, query or header parameter is malformed or unknown",
        );
    }
    if has_path || has_body {
        add(
            "404",
            "An object the path or body names does not exist, or the caller may not see it \
             (the two are not told apart)",
        );
    }
    if has_query_or_header {
        add(
            "422",
            "A query parameter has a value of the wrong form; `field` names it",
        );
    }
}

fn error_response(description: &str) -> RefOr<Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                utoipa::openapi::ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build(),
    )
}

/// Replaces the body schema `B` of each `text/event-stream` response by the SSE message that
/// carries it: `{id, event, data}`, `data` being `B` as JSON text.
fn describe_event_streams(op: &mut Operation) {
    for response in op.responses.responses.values_mut() {
        let RefOr::T(response) = response else {
            continue;
        };
        let Some(content) = response.content.get_mut(EVENT_STREAM) else {
            continue;
        };
        if let Some(RefOr::Ref(event)) = content.schema.take() {
            content.schema = Some(RefOr::T(sse_message(event)));
        }
    }
}

fn sse_message(event: Ref) -> Schema {
    let mut data_schema = Extensions::default();
    data_schema.insert(
        "contentSchema".into(),
        serde_json::json!({"$ref": event.ref_location}),
    );
    let data = ObjectBuilder::new()
        .schema_type(Type::String)
        .content_media_type("application/json")
        .description(Some("The event as JSON"))
        .extensions(Some(data_schema))
        .build();
    Schema::Object(
        ObjectBuilder::new()
            .description(Some(
                "One Server-Sent Events message: `id` resumes with Last-Event-ID, `event` is the type",
            ))
            .property("id", ObjectBuilder::new().schema_type(Type::String))
            .property("event", ObjectBuilder::new().schema_type(Type::String))
            .property("data", data)
            .required("data")
            .build(),
    )
}

#[cfg(test)]
mod tests {
    use crate::api::openapi_document;

    fn operations(doc: &serde_json::Value) -> Vec<(String, &serde_json::Value)> {
        let mut ops = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                ops.push((format!("{method} {path}"), op));
            }
        }
        ops
    }

    #[test]
    fn every_secured_operation_declares_401_and_every_body_its_rejections() {
        let doc = serde_json::to_value(openapi_document()).unwrap();
        let ops = operations(&doc);
        assert!(ops.len() > 100, "{}", ops.len());
        for (name, op) in ops {
            let responses = op["responses"].as_object().unwrap();
            if op.get("security").is_some() {
                assert!(responses.contains_key("401"), "{name} lacks 401");
                assert!(responses.contains_key("403"), "{name} lacks 403");
            }
            if op.get("requestBody").is_some() {
                for status in ["400", "413", "415", "422"] {
                    assert!(responses.contains_key(status), "{name} lacks {status}");
                }
            }
        }
    }

    #[test]
    fn event_streams_are_declared_as_sse_messages_carrying_the_event_json() {
        let doc = serde_json::to_value(openapi_document()).unwrap();
        let schema = &doc["paths"]["/api/v1/events"]["get"]["responses"]["200"]["content"]["text/event-stream"]
            ["schema"];
        let data = &schema["properties"]["data"];
        assert_eq!(data["type"], "string", "{schema}");
        assert_eq!(data["contentMediaType"], "application/json");
        assert_eq!(
            data["contentSchema"]["$ref"],
            "#/components/schemas/EventView"
        );
    }
}
