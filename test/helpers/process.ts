// Tests and benchmarks drive busguard processes the same way.
export * from '../../scripts/lib/logged-process.ts';
