export { openPtyPair, type PtyPair } from '../../hal/serial/pty-pair.ts';
