// Text a bus sent (a route, a reason) printed to a dispatcher's terminal: a
// hostile bus must not be able to clear the screen, move the cursor, forge a
// line or reorder what follows. Control characters and the Unicode ones that
// reorder or hide text are shown as \uXXXX.

const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]/g;

export function printable(text: string): string {
  return text.replace(UNSAFE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
