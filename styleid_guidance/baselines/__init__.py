"""The photo-trained identity models StyleID is compared with and can fall back to: ArcFace IR-SE50
(`arcface`, facexlib weights), AdaFace (`adaface`), and where their weights come from (`weights`)."""
