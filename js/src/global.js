// The classic <script> build's entry: one global, `Telegraphy` (the class, with the helpers as its statics).
import { Telegraphy } from "./index.js";

globalThis.Telegraphy = Telegraphy;
