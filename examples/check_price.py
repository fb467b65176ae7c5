"""The seed's price check: write the output for chaining, and a message only when the price is low.

The price comes from jobs/price.json if present (a local stand-in), else from the API, which needs
a network grant: runner schedule examples/check_price.py ... --allow-host api.example.test
Without a grant the job has no network, so it falls back to a fixed demo price.
"""

import json
import os
import urllib.request

API_URL = "http://api.example.test/item/123"
THRESHOLD = 100.0


def read_price():
    path = "jobs/price.json"
    if os.path.exists(path):
        with open(path) as f:
            return float(json.load(f)["price"]), "file"
    try:
        with urllib.request.urlopen(API_URL, timeout=10) as response:
            return float(json.loads(response.read())["price"]), "api"
    except OSError as exc:
        print(f"no price from the API ({exc}); using the demo price")
        return 89.99, "demo"


price, source = read_price()

# Write output for chaining: the next job reads jobs/check_price_output.json.
with open("jobs/check_price_output.json", "w") as f:
    json.dump({"price": price, "below_threshold": price < THRESHOLD}, f)

# CONDITIONAL: a message only if the criterion is met.
if price < THRESHOLD:
    with open("jobs/check_price_message.txt", "w") as f:
        f.write(f"\U0001f6a8 Price alert: ${price:.2f}\nhttps://amazon.com/item/123")
print(f"price {price} ({source})")
