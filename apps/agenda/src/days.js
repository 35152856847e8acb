// Grouping a tool's tasks by day, in the user's zone. A task's times come as ISO 8601 with the zone's offset
// ("2027-03-12T09:00:00+01:00"): their first ten characters are the local date and the next eight the local time,
// so no time-zone database is needed here. The list's `now` is the user's local time, in the same form.

const END_OF_DAY = "23:59:59"; // a date given without a time (docs/tools.md)

/** "2027-03-12" plus `days`, as a date string (calendar arithmetic in UTC, which has no gaps). */
export function addDays(date, days) {
  const [y, m, d] = date.split("-").map(Number);
  return new Date(Date.UTC(y, m - 1, d + days)).toISOString().slice(0, 10);
}

export function localDate(iso) {
  return iso.slice(0, 10);
}

export function localTime(iso) {
  return iso.slice(11, 19);
}

const WEEKDAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/** "Fri 12 Mar" for "2027-03-12". */
export function dayName(date) {
  const [y, m, d] = date.split("-").map(Number);
  return `${WEEKDAYS[new Date(Date.UTC(y, m - 1, d)).getUTCDay()]} ${d} ${MONTHS[m - 1]}`;
}

/** "09:00", or "" for a date without a time. */
export function clock(iso) {
  const time = localTime(iso);
  return time === END_OF_DAY ? "" : time.slice(0, 5);
}

export const GROUPS = [
  { key: "overdue", title: "Overdue" },
  { key: "today", title: "Today" },
  { key: "tomorrow", title: "Tomorrow" },
  { key: "later", title: "Later" },
  { key: "undated", title: "No date" },
];

/** The group a task belongs to, seen at `now` (the list's local time). */
export function groupOf(task, now) {
  if (!task.due_date) return "undated";
  const status = task.status ?? "pending";
  if (status === "pending" && Date.parse(task.due_date) < Date.parse(now)) return "overdue";
  const date = localDate(task.due_date);
  const today = localDate(now);
  if (date <= today) return "today";
  if (date === addDays(today, 1)) return "tomorrow";
  return "later";
}

/** The tasks in their groups, each group in the tool's order; empty groups left out. */
export function groupTasks(tasks, now) {
  const byKey = new Map(GROUPS.map((group) => [group.key, []]));
  for (const task of tasks) byKey.get(groupOf(task, now)).push(task);
  return GROUPS.map((group) => ({ ...group, tasks: byKey.get(group.key) })).filter((group) => group.tasks.length);
}

/** The due date a "snooze to tomorrow" gives: tomorrow (after `now`), at the task's own time of day. */
export function snoozedDue(task, now) {
  const tomorrow = addDays(localDate(now), 1);
  if (!task.due_date) return tomorrow;
  const time = localTime(task.due_date);
  return time === END_OF_DAY ? tomorrow : `${tomorrow}T${time}`;
}
