// The text of whatever was thrown, for log lines and error messages.

export function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
