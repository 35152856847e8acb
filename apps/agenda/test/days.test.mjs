// The day arithmetic of the agenda (src/days.js): `node --test test/` (npm test), run by tests/unit/test_agenda_days.py.
import assert from "node:assert/strict";
import { test } from "node:test";
import { addDays, clock, dayName, groupOf, groupTasks, snoozedDue } from "../src/days.js";

const NOW = "2027-03-27T22:30:00+01:00"; // Saturday evening in Paris, the night before summer time starts

test("days are calendar days, across month and year ends and leap days", () => {
  assert.equal(addDays("2027-03-31", 1), "2027-04-01");
  assert.equal(addDays("2027-12-31", 1), "2028-01-01");
  assert.equal(addDays("2028-02-28", 1), "2028-02-29");
  assert.equal(addDays("2027-03-01", -1), "2027-02-28");
  assert.equal(dayName("2027-03-28"), "Sun 28 Mar");
});

test("a task goes to the day of its local date; overdue means pending and past", () => {
  const at = (due_date, status) => groupOf({ due_date, status }, NOW);
  assert.equal(at("2027-03-27T22:00:00+01:00"), "overdue");
  assert.equal(at("2027-03-27T22:00:00+01:00", "completed"), "today");
  assert.equal(at("2027-03-27T23:59:59+01:00"), "today");
  // Tomorrow is in summer time: another offset, the same calendar.
  assert.equal(at("2027-03-28T09:00:00+02:00"), "tomorrow");
  assert.equal(at("2027-03-29T09:00:00+02:00"), "later");
  assert.equal(at("2027-03-25T09:00:00+01:00"), "overdue");
  assert.equal(groupOf({}, NOW), "undated");
});

test("groups keep the tool's order and leave out empty days", () => {
  const tasks = [
    { id: 1, due_date: "2027-03-29T09:00:00+02:00" },
    { id: 2 },
    { id: 3, due_date: "2027-03-20T09:00:00+01:00" },
    { id: 4, due_date: "2027-03-30T09:00:00+02:00" },
  ];
  const groups = groupTasks(tasks, NOW).map((group) => [group.key, group.tasks.map((task) => task.id)]);
  assert.deepEqual(groups, [["overdue", [3]], ["later", [1, 4]], ["undated", [2]]]);
});

test("a date without a time reads as the day alone", () => {
  assert.equal(clock("2027-03-28T23:59:59+02:00"), "");
  assert.equal(clock("2027-03-28T09:05:00+02:00"), "09:05");
});

test("snoozing keeps the time of day and moves to the day after now", () => {
  assert.equal(snoozedDue({ due_date: "2027-03-20T08:15:00+01:00" }, NOW), "2027-03-28T08:15:00");
  assert.equal(snoozedDue({ due_date: "2027-03-27T23:59:59+01:00" }, NOW), "2027-03-28");
  assert.equal(snoozedDue({}, NOW), "2027-03-28");
});
