// esbuild loads CSS files as text for the page (see ../assets.ts).
declare module '*.css' {
  const text: string;
  export default text;
}
