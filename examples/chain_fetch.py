"""First job of a chain: produce data for the next job in jobs/chain_fetch_output.json."""

import json

orders = [{"id": i, "amount": round(10 + i * 2.5, 2)} for i in range(1, 6)]
with open("jobs/chain_fetch_output.json", "w") as f:
    json.dump({"orders": orders}, f)
print(f"fetched {len(orders)} orders")
