import { Providers } from "./providers";

export const metadata = { title: "Sallyport · Next.js example" };

export default function RootLayout({ children }) {
  return (
    <html lang="en">
      <body style={{ fontFamily: "system-ui, sans-serif", maxWidth: 640, margin: "2rem auto" }}>
        <Providers>{children}</Providers>
      </body>
    </html>
  );
}
