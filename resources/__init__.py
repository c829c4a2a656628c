"""Flask-RESTful resources, one module per resource, and the routes that serve them."""
