"""What the tests share: servers, apps, fixtures (a pytest plugin) and helpers."""
