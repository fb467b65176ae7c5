"""The seed's loops: repeat N times, loop until a condition, and for each item."""

import json
import time

# Repeat N times.
squares = [i * i for i in range(10)]

# Until a condition (with a bounded number of checks and a short sleep, well inside the time limit).
attempts = 0
while True:
    attempts += 1
    status = "complete" if attempts >= 3 else "pending"
    if status == "complete":
        break
    time.sleep(0.1)

# For each item.
lines = []
for item in ["apples", "bread", "coffee"]:
    lines.append(f"- {item}")

with open("jobs/loops_output.json", "w") as f:
    json.dump({"squares": squares, "attempts": attempts, "items": len(lines)}, f)
with open("jobs/loops_message.txt", "w") as f:
    f.write(f"Checked {attempts} times; shopping list:\n" + "\n".join(lines))
