//! One JSON request over real HTTP, as the API tests and benchmarks make them.

use serde_json::Value;

/// Sends `method url` with `headers` and, when given, `body` as JSON; the status and
/// the JSON body (`Null` when the body is not JSON). Error statuses are answers, not
/// errors (the agent must not turn them into errors); a transport error panics.
pub fn call_json(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> (u16, Value) {
    let mut request = ureq::http::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut response = match body {
        Some(body) => agent.run(
            request
                .header("content-type", "application/json")
                .body(body.to_string())
                .unwrap(),
        ),
        None => agent.run(request.body(()).unwrap()),
    }
    .unwrap();
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}
