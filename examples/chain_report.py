"""Second job of a chain: read the previous job's output and send a summary."""

import json

with open("jobs/chain_fetch_output.json") as f:
    data = json.load(f)

total = sum(o["amount"] for o in data["orders"])
with open("jobs/chain_report_output.json", "w") as f:
    json.dump({"orders": len(data["orders"]), "total": total}, f)
with open("jobs/chain_report_message.txt", "w") as f:
    f.write(f"Daily report: {len(data['orders'])} orders, total ${total:.2f}")
