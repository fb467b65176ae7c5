"""The seed's price check: write the output for chaining, and a message only when the price is low.

There is no internet here, so the price is read from jobs/price.json if present (write one there to
simulate the API), else a fixed demo price is used. With network egress granted (--allow-host), replace
read_price() with urllib.request.urlopen("https://api.example.com/item/123").
"""

import json
import os

THRESHOLD = 100.0


def read_price():
    path = "jobs/price.json"
    if os.path.exists(path):
        with open(path) as f:
            return float(json.load(f)["price"])
    return 89.99


price = read_price()

# Write output for chaining: the next job reads jobs/check_price_output.json.
with open("jobs/check_price_output.json", "w") as f:
    json.dump({"price": price, "below_threshold": price < THRESHOLD}, f)

# CONDITIONAL: a message only if the criterion is met.
if price < THRESHOLD:
    with open("jobs/check_price_message.txt", "w") as f:
        f.write(f"\U0001f6a8 Price alert: ${price:.2f}\nhttps://amazon.com/item/123")
print(f"price {price}")
