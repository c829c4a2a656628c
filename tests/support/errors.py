"""The contract's error envelope, checked: `{"error": code, "message": text}`."""


def envelope(response, status, code):
    """Assert `response` is the JSON envelope with this status and code; its body."""
    assert response.status_code == status
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert body["error"] == code and isinstance(body["message"], str) and body["message"]
    return body
