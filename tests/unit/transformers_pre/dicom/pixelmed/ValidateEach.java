import com.pixelmed.validate.DicomSRValidator;

/** Runs PixelMed's SR validator over each file named, compiling its template rules once. */
public class ValidateEach {
    public static void main(String[] paths) throws Exception {
        DicomSRValidator validator = new DicomSRValidator();
        for (String path : paths) {
            System.out.println("=== " + path);
            System.out.print(validator.validate(path));
            System.out.println("=== end");
        }
    }
}
